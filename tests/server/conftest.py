"""Fixtures for the server tests: real servers (tests/llm_server.py) shared per session, and the
tiny random model with started engines for the in-process engine tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from llmserve.engine import ContinuousBatchingEngine
from llmserve.models import LoadedModel, load_model

from tests.llm_server import RunningServer, start_server

EngineFactory = Callable[..., ContinuousBatchingEngine]


@pytest.fixture(scope="session")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The workhorse: random:tiny, a small batch so the batching tests make requests queue and
    join mid-flight, and a short context so over-long prompts are cheap to build."""
    server = start_server(
        tmp_path_factory.mktemp("tiny"),
        "random:tiny",
        max_batch="3",
        max_queue="64",
        max_model_len="512",
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One batch slot, one queue slot and an API key: overload, cancellation and auth."""
    server = start_server(
        tmp_path_factory.mktemp("guarded"),
        "random:tiny",
        api_key="sk-test-key",
        max_batch="1",
        max_queue="1",
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The default model: no LLMSERVE_MODEL at all, so the bundled SmolLM2 GGUF is found."""
    server = start_server(tmp_path_factory.mktemp("smollm2"), None)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return load_model("random:tiny", "cpu", "float32")


@pytest.fixture(scope="module")
def tiny_llama() -> LoadedModel:
    return load_model("random:tiny-llama", "cpu", "float32")


@pytest.fixture
def engine_factory(tiny: LoadedModel) -> Iterator[EngineFactory]:
    """Builds and starts an engine on `tiny` or the `loaded` model given (256-token context,
    `eos` as its EOS ids, other engine arguments as given); every engine built is stopped
    after the test."""
    engines: list[ContinuousBatchingEngine] = []

    def build(
        eos: Sequence[int] = (), loaded: LoadedModel | None = None, **kwargs: Any
    ) -> ContinuousBatchingEngine:
        model = loaded or tiny
        engine = ContinuousBatchingEngine(
            model.model, model.tokenizer, max_model_len=256, eos_token_ids=list(eos), **kwargs
        )
        engines.append(engine)
        engine.start()
        return engine

    yield build
    for engine in engines:
        engine.stop()

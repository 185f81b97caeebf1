"""The engine in-process, behind its small interface: EOS handling, min_tokens, ignore_eos,
cancellation of queued work, decoding of ids the tokenizer does not know, and sampling."""

from __future__ import annotations

import asyncio

import pytest
import torch
from llmserve.detokenize import IncrementalDetokenizer
from llmserve.engine import ContinuousBatchingEngine
from llmserve.engine_api import Delta, SamplingParams
from llmserve.logits import LogitsContext
from llmserve.models import LoadedModel
from llmserve.sampling import PlainRow, pick_next_tokens

from tests.server.conftest import EngineFactory

PROMPT = [1, 504, 3458, 314, 260, 1345]
GREEDY = SamplingParams(max_tokens=8, temperature=0.0)


async def run(engine: ContinuousBatchingEngine, params: SamplingParams) -> list[Delta]:
    return [delta async for delta in engine.submit(PROMPT, params)]


def first_greedy_token(tiny: LoadedModel) -> int:
    with torch.no_grad():
        return int(tiny.model(torch.tensor([PROMPT])).logits[0, -1].argmax())


@pytest.mark.parametrize("kv_cache", ["padded", "paged"])
def test_eos_stops_unless_ignored_and_min_tokens_masks_it(
    tiny: LoadedModel, engine_factory: EngineFactory, kv_cache: str
) -> None:
    # Declare the model's own first greedy token to be EOS: a real EOS on demand.
    engine = engine_factory([first_greedy_token(tiny)], kv_cache=kv_cache)

    async def scenario() -> tuple[list[Delta], list[Delta], list[Delta]]:
        return (
            await run(engine, GREEDY),
            await run(engine, SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)),
            await run(engine, SamplingParams(max_tokens=8, temperature=0.0, min_tokens=3)),
        )

    stopped, ignored, at_least_three = asyncio.run(scenario())
    assert (stopped[-1].finish_reason, stopped[-1].completion_tokens) == ("stop", 1)
    assert "".join(d.text for d in stopped) == ""  # EOS itself is not text
    assert (ignored[-1].finish_reason, ignored[-1].completion_tokens) == ("length", 8)
    assert at_least_three[-1].completion_tokens >= 3


@pytest.mark.parametrize("kv_cache", ["padded", "paged"])
def test_cancel_of_a_queued_request_ends_it_and_keeps_the_engine_serving(
    engine_factory: EngineFactory, kv_cache: str
) -> None:
    engine = engine_factory(max_batch=1, max_queue=4, kv_cache=kv_cache)

    async def scenario() -> tuple[list[Delta], list[Delta], list[Delta]]:
        busy = engine.submit(PROMPT, SamplingParams(max_tokens=200, temperature=0.0))
        queued = engine.submit(PROMPT, GREEDY)
        queued.cancel()
        busy.cancel()
        after = await run(engine, GREEDY)
        return [d async for d in busy], [d async for d in queued], after

    busy, queued, after = asyncio.run(scenario())
    assert busy[-1].finish_reason == "cancelled" and busy[-1].completion_tokens < 200
    assert queued[-1].finish_reason == "cancelled"
    assert (after[-1].finish_reason, after[-1].completion_tokens) == ("length", 8)
    assert engine.stats().running == 0 and engine.in_flight() == 0
    assert engine.stats().cache_tokens == 0  # paged: every block is back


def test_ids_beyond_the_vocabulary_decode_to_nothing(tiny: LoadedModel) -> None:
    detok = IncrementalDetokenizer(tiny.tokenizer)
    hello = tiny.tokenizer.encode("Hello world")
    for token in [hello[0], 60000, -5, 10**9, *hello[1:]]:
        detok.add(token)
    assert detok.take_new_text(final=True) == "Hello world"


class _SlowTokenizer:
    """Only decode() and len(): the windowed fallback path for tokenizers without Rust."""

    def __init__(self, tokenizer: object) -> None:
        self._tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self._tokenizer)  # type: ignore[arg-type]

    def decode(self, tokens: list[int], skip_special_tokens: bool = True) -> str:
        return self._tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)  # type: ignore[attr-defined]


@pytest.mark.parametrize("slow", [False, True], ids=["decode-stream", "windowed"])
def test_multibyte_text_round_trips_token_by_token(tiny: LoadedModel, slow: bool) -> None:
    text = "Grüße, 你好 🙂 done"
    detok = IncrementalDetokenizer(_SlowTokenizer(tiny.tokenizer) if slow else tiny.tokenizer)
    pieces = []
    for token in tiny.tokenizer.encode(text):
        detok.add(token)
        pieces.append(detok.take_new_text())
        assert "\ufffd" not in pieces[-1]
    assert "".join(pieces) + detok.take_new_text(final=True) == text


def test_stop_text_is_held_back_until_it_can_be_ruled_out(tiny: LoadedModel) -> None:
    detok = IncrementalDetokenizer(tiny.tokenizer, stop=["END!"])
    pieces = []
    for token in tiny.tokenizer.encode("one two EN three END! four"):
        detok.add(token)
        pieces.append(detok.take_new_text())
        assert "EN" not in "".join(pieces)[-2:] or not detok.stopped
    assert detok.stopped
    assert "".join(pieces) + detok.take_new_text(final=True) == "one two EN three "


def tokens(logits: torch.Tensor, rows: list[PlainRow], eos: list[int] | None = None) -> list[int]:
    return [c.token for c in pick_next_tokens(logits.clone(), rows, LogitsContext(eos or []))]


def test_top_p_keeps_only_the_nucleus_and_min_tokens_masks_eos() -> None:
    logits = torch.tensor([[0.0, 5.0, 4.9, -3.0], [9.0, 1.0, 0.0, 0.0]])
    top_p = PlainRow(
        SamplingParams(max_tokens=1, temperature=1.0, top_p=0.3, seed=3),
        torch.Generator().manual_seed(3),
    )
    for _ in range(20):  # top_p=0.3 leaves one token: sampling is forced
        assert tokens(logits, [top_p, PlainRow(GREEDY)], [0]) == [1, 0]
    blocked = PlainRow(SamplingParams(max_tokens=4, temperature=0.0, min_tokens=1))
    assert tokens(logits, [top_p, blocked], [0]) == [1, 1]


def test_seeded_sampling_does_not_depend_on_the_batch() -> None:
    torch.manual_seed(0)
    row = torch.randn(1, 50)
    params = SamplingParams(max_tokens=1, temperature=1.0, seed=99)
    alone = tokens(row, [PlainRow(params, torch.Generator().manual_seed(99))])
    others = torch.randn(3, 50)
    batched = tokens(
        torch.cat([others, row]),
        [
            PlainRow(GREEDY),
            PlainRow(GREEDY),
            PlainRow(GREEDY),
            PlainRow(params, torch.Generator().manual_seed(99)),
        ],
    )
    assert batched[3] == alone[0]


@pytest.mark.parametrize("kv_cache", ["padded", "paged"])
def test_a_failing_step_ends_its_requests_with_an_error_and_the_engine_recovers(
    tiny: LoadedModel, engine_factory: EngineFactory, kv_cache: str
) -> None:
    engine = engine_factory(kv_cache=kv_cache)
    vocab = tiny.model.config.vocab_size

    async def scenario() -> tuple[list[Delta], list[Delta]]:
        broken = [d async for d in engine.submit([1, vocab + 5], GREEDY)]  # bad embedding index
        return broken, await run(engine, GREEDY)

    broken, after = asyncio.run(asyncio.wait_for(scenario(), timeout=120))
    assert broken[-1].finish_reason == "error" and "generation failed" in (broken[-1].error or "")
    assert (after[-1].finish_reason, after[-1].completion_tokens) == ("length", 8)
    assert engine.stats().cache_tokens == 0  # paged: the failed step's blocks came back too


def test_a_vanishing_temperature_is_greedy_not_a_crash() -> None:
    # 1e-40 passes the protocol's range; dividing float32 logits by it gives inf and NaN.
    logits = torch.tensor([[0.5, 2.0, -1.0], [3.0, 0.0, 1.0]])
    rows = [
        PlainRow(SamplingParams(max_tokens=4, temperature=1e-40)),
        PlainRow(SamplingParams(max_tokens=4, temperature=1e-6)),
    ]
    assert tokens(logits, rows) == [1, 0]


class _BrokenGpu:
    """The model after an illegal memory access: every call fails the same way."""

    def __init__(self, model: torch.nn.Module) -> None:
        self._model, self.config = model, model.config

    def parameters(self):  # type: ignore[no-untyped-def]
        return self._model.parameters()

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_a_broken_gpu_stops_the_engine_so_the_pod_is_restarted(
    tiny: LoadedModel, engine_factory: EngineFactory
) -> None:
    from llmserve.app import Backend, ServerState
    from llmserve.engine_api import EngineStoppedError
    from llmserve.settings import Settings

    engine = engine_factory()
    state = ServerState(
        Settings(model=None, model_name=None), backend=Backend(engine, tiny.tokenizer, "tiny", 1)
    )
    assert engine.alive() and state.ready and not state.engine_dead
    engine.runner.model = _BrokenGpu(tiny.model)

    async def scenario() -> list[Delta]:
        return [d async for d in engine.submit(PROMPT, GREEDY)]

    deltas = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert deltas[-1].finish_reason == "error" and "CUDA error" in (deltas[-1].error or "")
    engine._thread.join(timeout=30)  # type: ignore[union-attr]
    assert not engine.alive() and not state.ready and state.engine_dead

    async def after() -> None:
        engine.submit(PROMPT, GREEDY)

    with pytest.raises(EngineStoppedError):
        asyncio.run(after())

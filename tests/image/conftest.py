"""Fixtures for the image tests: one real `llmserve serve` with a tiny random model, shared by the
load-generator and chat-page tests, behind an API key so the page's 401 path is real too. The key
starts with '-', as one real key in 64 from `secrets.token_urlsafe` does, so every CLI run here
passes such a value."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.llm_server import RunningServer, start_server


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(
        tmp_path_factory.mktemp("server"),
        "random:tiny",
        api_key="-" + secrets.token_urlsafe(16),
        max_batch="16",
    )
    yield server
    server.stop()

"""Fixtures for the image tests: one real `llmserve serve` with a tiny random model, shared by the
load-generator and chat-page tests, behind an API key so the page's 401 path is real too."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.image.llm_server import (
    IMAGE_DIR,
    READY_TIMEOUT_S,
    REPO_ROOT,
    RunningServer,
    free_port,
    wait_ready,
)


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api_key = secrets.token_urlsafe(16)
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "PYTHONPATH": str(IMAGE_DIR), "LLMSERVE_API_KEY": api_key,
           "LLMSERVE_DEVICE": "cpu", "LLMSERVE_MAX_BATCH": "16", "PYTHONUNBUFFERED": "1"}
    env.pop("LLMSERVE_API_KEY_FILE", None)
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmserve", "serve", "--model", "random:tiny",
             "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        wait_ready(url, proc, log_path, READY_TIMEOUT_S)
        yield RunningServer(url=url, api_key=api_key, log_path=log_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

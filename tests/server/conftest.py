"""Real servers for the tests: `python -m llmserve serve` in a subprocess on 127.0.0.1, reached
over HTTP exactly as a client in the cluster would reach it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE_DIR = REPO / "image"
READY_DEADLINE_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    api_key: str | None = None
    startup: list[tuple[int, int, str]] = field(default_factory=list)  # (/health, /ready, status)

    def client(self, **kwargs: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.api_key or "unused",
                             max_retries=0, timeout=120, **kwargs)  # type: ignore[arg-type]

    def http(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.url, timeout=120, headers=headers)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str) -> float:
        """The value of an unlabelled metric line from /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"metric {name} not found in /metrics")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(tmp_path: Path, model: str | None, api_key: str | None = None,
                 **settings: str) -> RunningServer:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVE_")}
    if model is not None:
        env["LLMSERVE_MODEL"] = model
    env.update({"LLMSERVE_PORT": str(port),
                "LLMSERVE_HOST": "127.0.0.1", "LLMSERVE_DEVICE": "cpu",
                "LLMSERVE_LOG_LEVEL": "warning", "PYTHONPATH": str(IMAGE_DIR),
                "OMP_NUM_THREADS": "1"})
    env.update({f"LLMSERVE_{k.upper()}": v for k, v in settings.items()})
    if api_key is not None:
        key_file = tmp_path / "api-key"
        key_file.write_text(api_key + "\n")
        env["LLMSERVE_API_KEY_FILE"] = str(key_file)
    log_path = tmp_path / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "llmserve", "serve"], cwd=IMAGE_DIR,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    server = RunningServer(process, f"http://127.0.0.1:{port}", log_path, api_key)
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            ready = httpx.get(f"{server.url}/ready", timeout=5)
            health = httpx.get(f"{server.url}/health", timeout=5)
            server.startup.append((health.status_code, ready.status_code,
                                   ready.json().get("status", "")))
            if ready.status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server not ready after {READY_DEADLINE_S} s:\n{server.log()}")


@pytest.fixture(scope="session")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The workhorse: random:tiny, a small batch so the batching tests make requests queue and
    join mid-flight, and a short context so over-long prompts are cheap to build."""
    server = start_server(tmp_path_factory.mktemp("tiny"), "random:tiny", max_batch="3",
                          max_queue="64", max_model_len="512")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One batch slot, one queue slot and an API key: overload, cancellation and auth."""
    server = start_server(tmp_path_factory.mktemp("guarded"), "random:tiny",
                          api_key="sk-test-key", max_batch="1", max_queue="1")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The default model: no LLMSERVE_MODEL at all, so the bundled SmolLM2 GGUF is found."""
    server = start_server(tmp_path_factory.mktemp("smollm2"), None)
    yield server
    server.stop()

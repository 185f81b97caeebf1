"""Real servers for the tests: `python -m llmserve serve` in a subprocess on 127.0.0.1, reached
over HTTP exactly as a client in the cluster would reach it. A plain module (not a conftest), so
tests/server and tests/image share one harness."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_DIR = REPO_ROOT / "image"
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
        return openai.OpenAI(
            base_url=f"{self.url}/v1",
            api_key=self.api_key or "unused",
            max_retries=0,
            timeout=120,
            **kwargs,
        )  # type: ignore[arg-type]

    def http(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.url, timeout=120, headers=headers)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_once(self, condition: Callable[[str], bool], what: str, deadline_s: float = 30) -> str:
        """The log once `condition` holds of it. Access records are written when a response has
        been sent, so a client that has its answer can be ahead of the server's log line."""
        end = time.monotonic() + deadline_s
        while True:
            log = self.log()
            if condition(log):
                return log
            if time.monotonic() > end:
                raise AssertionError(f"log never showed {what} in {deadline_s} s:\n{log[-2000:]}")
            time.sleep(0.05)

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics, keyed by its name with labels as written."""
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }

    def metric(self, name: str) -> float:
        """The value of an unlabelled metric line from /metrics."""
        value = self.metrics().get(name)
        if value is None:
            raise AssertionError(f"metric {name} not found in /metrics")
        return value

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    tmp_path: Path, model: str | None, api_key: str | None = None, **settings: str
) -> RunningServer:
    """Starts a server and returns once /ready says 200; `settings` become LLMSERVE_<NAME>.
    One OpenMP thread per server: the test machines have few cores, shared by several servers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVE_")}
    if model is not None:
        env["LLMSERVE_MODEL"] = model
    env.update(
        {
            "LLMSERVE_PORT": str(port),
            "LLMSERVE_HOST": "127.0.0.1",
            "LLMSERVE_DEVICE": "cpu",
            "LLMSERVE_LOG_LEVEL": "warning",
            "PYTHONPATH": str(IMAGE_DIR),
            "OMP_NUM_THREADS": "1",
        }
    )
    env.update({f"LLMSERVE_{k.upper()}": v for k, v in settings.items()})
    if api_key is not None:
        key_file = tmp_path / "api-key"
        key_file.write_text(api_key + "\n")
        env["LLMSERVE_API_KEY_FILE"] = str(key_file)
    log_path = tmp_path / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmserve", "serve"],
            cwd=IMAGE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(process, f"http://127.0.0.1:{port}", log_path, api_key)
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            ready = httpx.get(f"{server.url}/ready", timeout=5)
            health = httpx.get(f"{server.url}/health", timeout=5)
            server.startup.append(
                (health.status_code, ready.status_code, ready.json().get("status", ""))
            )
            if ready.status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server not ready after {READY_DEADLINE_S} s:\n{server.log()}")

"""`make serve` as people run it: a signal to make reaches the server, nothing is left behind, a
hub id is fetched and served, and a mistake is one line that names the make variable."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tests.image.fake_hub import FakeHub
from tests.image.hub_models import tiny_llama_repo
from tests.llm_server import REPO_ROOT, free_port


def make_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMSERVE_", "MAKE"))}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def make_serve(*variables: str, env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    with output.open("wb") as out:
        return subprocess.Popen(
            ["make", "--no-print-directory", "serve", *variables],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def failure_lines(*variables: str, tmp_path: Path) -> list[str]:
    """What a failing `make serve` printed, less make's own echo of the recipe and its trailer."""
    output = tmp_path / "make.log"
    make = make_serve(*variables, env=make_env(), output=output)
    assert make.wait(timeout=240) != 0
    lines = output.read_text().splitlines()
    return [line for line in lines if not line.startswith(("exec env ", "make: *** "))]


def wait_ready(url: str, process: subprocess.Popen[bytes], deadline_s: float = 180) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        assert process.poll() is None, "make serve exited before the server was ready"
        try:
            if httpx.get(url + "/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server never became ready")


def test_sigterm_to_make_stops_the_server_and_frees_the_port() -> None:
    port = free_port()
    env = make_env()
    make = subprocess.Popen(
        ["make", "--no-print-directory", "serve", f"PORT={port}", "MODEL=random:tiny"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, make)
        make.send_signal(signal.SIGTERM)  # what `kill <pid of make>` does
        make.wait(timeout=60)
        # The server got the signal too: it drained and exited, so nothing answers any more.
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                httpx.get(url + "/health", timeout=2)
            except httpx.TransportError:
                return
            time.sleep(0.2)
        raise AssertionError(f"a server still answers on port {port} after make was stopped")
    finally:
        if make.poll() is None:
            make.kill()


def test_a_hub_id_is_downloaded_with_progress_then_served(tmp_path: Path) -> None:
    port = free_port()
    output = tmp_path / "make.log"
    repo = tiny_llama_repo("acme/tiny-llama")
    with FakeHub([repo]) as hub:
        env = make_env(HF_ENDPOINT=hub.url, XDG_CACHE_HOME=str(tmp_path / "cache"))
        make = make_serve(f"PORT={port}", "MODEL=acme/tiny-llama", env=env, output=output)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, make)
            assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "acme/tiny-llama"
            reply = httpx.post(
                url + "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
                timeout=60,
            )
            assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] > 0
        finally:
            make.send_signal(signal.SIGTERM)
            make.wait(timeout=60)
        assert hub.gets()["model.safetensors"] == 1
    log = output.read_text()
    assert f"downloading acme/tiny-llama@main ({len(repo.files)} files, " in log
    assert f"from {hub.url} into " in log
    assert "have model.safetensors" in log and "HTTP Request:" not in log
    assert f"ready: http://127.0.0.1:{port}/" in log
    cached = tmp_path / "cache" / "llmserve" / "hub" / "acme--tiny-llama" / "main"
    assert (cached / "model.safetensors").is_file()


def test_a_bad_model_is_one_line_naming_model(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    lines = failure_lines(f"PORT={free_port()}", f"MODEL={missing}", tmp_path=tmp_path)
    assert len(lines) == 1, lines
    assert f"MODEL='{missing}' does not exist; allowed: a .gguf file" in lines[0]
    assert "LLMSERVE_MODEL" not in lines[0] and "--model" not in lines[0]


def test_a_busy_port_is_one_line_naming_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        lines = failure_lines(f"PORT={port}", "MODEL=random:tiny", tmp_path=tmp_path)
    assert len(lines) == 1, lines
    assert f"PORT={port} is already in use on 127.0.0.1" in lines[0]
    assert "Traceback" not in lines[0]

"""`make serve` as people run it: a signal to make reaches the server, nothing is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx

from tests.llm_server import REPO_ROOT, free_port


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
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMSERVE_", "MAKE"))}
    env["OMP_NUM_THREADS"] = "1"
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

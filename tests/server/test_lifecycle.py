"""Slots, queues and shutdown: a client that leaves frees its slot, a full queue says 429 with
Retry-After, and SIGTERM lets in-flight streams finish before the process exits 0."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.llm_server import RunningServer, start_server

LONG = {"prompt": "Tell me everything", "max_tokens": 1500, "temperature": 0,
        "ignore_eos": True, "stream": True}


def wait_until(predicate, what: str, deadline_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """Polls with a generous deadline: this checks that something happens, not how fast."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {what}")


def open_stream(server: RunningServer, body: dict[str, object]) -> Iterator[str]:
    """Yields SSE data lines; closing the generator drops the connection."""
    with server.http() as http, http.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: "):
                yield line.removeprefix("data: ")


def test_a_client_that_disconnects_frees_its_slot(guarded_server: RunningServer) -> None:
    generated_before = guarded_server.metric("llmserve_generation_tokens_total")
    stream = open_stream(guarded_server, LONG)
    next(stream)  # running: the only batch slot is taken
    assert guarded_server.metric("llmserve_running_batch_size") == 1
    stream.close()  # the client goes away mid-answer
    wait_until(lambda: guarded_server.metric("llmserve_running_batch_size") == 0,
               "the cancelled request to leave the batch")
    wait_until(lambda: guarded_server.metric("llmserve_generation_tokens_total")
               > generated_before, "the cancelled request to be accounted")
    cancelled_tokens = guarded_server.metric("llmserve_generation_tokens_total") \
        - generated_before
    assert cancelled_tokens < 1500  # it stopped early instead of running to max_tokens
    with guarded_server.http() as http:  # and the slot serves the next client
        reply = http.post("/v1/completions", json={"prompt": "next", "max_tokens": 4})
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 4


def test_a_non_streaming_client_that_gives_up_frees_its_slot(
        guarded_server: RunningServer) -> None:
    generated_before = guarded_server.metric("llmserve_generation_tokens_total")
    body = {**LONG, "stream": False}
    with guarded_server.http() as http, pytest.raises(httpx.ReadTimeout):
        # The client waits one second for a 1500-token answer, then hangs up.
        http.post("/v1/completions", json=body, timeout=httpx.Timeout(1.0))
    wait_until(lambda: guarded_server.metric("llmserve_running_batch_size") == 0,
               "the abandoned request to leave the batch")
    wait_until(lambda: guarded_server.metric("llmserve_generation_tokens_total")
               > generated_before, "the abandoned request to be accounted")
    generated = guarded_server.metric("llmserve_generation_tokens_total") - generated_before
    assert generated < 1500  # stopped when the client left, not at max_tokens


def test_overload_is_refused_with_429_and_retry_after(guarded_server: RunningServer) -> None:
    running = open_stream(guarded_server, LONG)
    next(running)  # takes the one batch slot
    queued_result: list[httpx.Response] = []

    def queued() -> None:
        with guarded_server.http() as http:
            queued_result.append(http.post("/v1/completions",
                                           json={"prompt": "wait", "max_tokens": 3}))

    waiter = threading.Thread(target=queued)
    waiter.start()
    wait_until(lambda: guarded_server.metric("llmserve_queue_depth") == 1,
               "the second request to wait in the queue")
    with guarded_server.http() as http:
        refused = http.post("/v1/completions", json={"prompt": "no room", "max_tokens": 3})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"].isdigit()
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "queue_full"
    running.close()  # frees the slot: the queued request runs
    waiter.join(timeout=120)
    assert queued_result and queued_result[0].status_code == 200


@pytest.fixture
def drain_server(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_server(tmp_path, "random:tiny", drain_seconds="120")
    yield server
    server.stop()


def test_sigterm_drains_in_flight_streams_then_exits_0(drain_server: RunningServer) -> None:
    chunks = open_stream(drain_server, LONG)
    received = [next(chunks)]
    drain_server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: httpx.get(drain_server.url + "/ready").status_code == 503,
               "/ready to turn false")
    assert httpx.get(drain_server.url + "/ready").json()["status"] == "draining"
    refused = httpx.post(drain_server.url + "/v1/completions", json={"prompt": "late"})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "server_draining"
    received.extend(chunks)  # the in-flight stream runs to its end
    assert received[-1] == "[DONE]"
    assert '"finish_reason": "length"' in received[-2]
    assert drain_server.process.wait(timeout=60) == 0


def test_sigterm_with_nothing_in_flight_exits_0_at_once(drain_server: RunningServer) -> None:
    drain_server.process.send_signal(signal.SIGTERM)
    assert drain_server.process.wait(timeout=60) == 0

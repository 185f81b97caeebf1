"""Slots, queues and shutdown: a client that leaves frees its slot, a full queue says 429 with
Retry-After, and SIGTERM lets in-flight streams finish before the process exits 0."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.llm_server import RunningServer, start_server

GENERATED = 'vllm:generation_tokens_total{model_name="random-tiny"}'
RUNNING = 'vllm:num_requests_running{model_name="random-tiny"}'
WAITING = 'vllm:num_requests_waiting{model_name="random-tiny"}'
LONG = {
    "prompt": "Tell me everything",
    "max_tokens": 1500,
    "temperature": 0,
    "ignore_eos": True,
    "stream": True,
}


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
    generated_before = guarded_server.metric(GENERATED)
    stream = open_stream(guarded_server, LONG)
    next(stream)  # running: the only batch slot is taken
    assert guarded_server.metric(RUNNING) == 1
    stream.close()  # the client goes away mid-answer
    wait_until(
        lambda: guarded_server.metric(RUNNING) == 0, "the cancelled request to leave the batch"
    )
    wait_until(
        lambda: guarded_server.metric(GENERATED) > generated_before,
        "the cancelled request to be accounted",
    )
    cancelled_tokens = guarded_server.metric(GENERATED) - generated_before
    assert cancelled_tokens < 1500  # it stopped early instead of running to max_tokens
    with guarded_server.http() as http:  # and the slot serves the next client
        reply = http.post("/v1/completions", json={"prompt": "next", "max_tokens": 4})
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 4


def test_a_non_streaming_client_that_gives_up_frees_its_slot(guarded_server: RunningServer) -> None:
    generated_before = guarded_server.metric(GENERATED)
    body = {**LONG, "stream": False}
    with guarded_server.http() as http, pytest.raises(httpx.ReadTimeout):
        # The client waits one second for a 1500-token answer, then hangs up.
        http.post("/v1/completions", json=body, timeout=httpx.Timeout(1.0))
    wait_until(
        lambda: guarded_server.metric(RUNNING) == 0, "the abandoned request to leave the batch"
    )
    wait_until(
        lambda: guarded_server.metric(GENERATED) > generated_before,
        "the abandoned request to be accounted",
    )
    generated = guarded_server.metric(GENERATED) - generated_before
    assert generated < 1500  # stopped when the client left, not at max_tokens


def test_overload_is_refused_with_429_and_retry_after(guarded_server: RunningServer) -> None:
    running = open_stream(guarded_server, LONG)
    next(running)  # takes the one batch slot
    queued_result: list[httpx.Response] = []

    def queued() -> None:
        with guarded_server.http() as http:
            queued_result.append(
                http.post("/v1/completions", json={"prompt": "wait", "max_tokens": 3})
            )

    waiter = threading.Thread(target=queued)
    waiter.start()
    wait_until(
        lambda: guarded_server.metric(WAITING) == 1, "the second request to wait in the queue"
    )
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
    wait_until(
        lambda: httpx.get(drain_server.url + "/ready").status_code == 503, "/ready to turn false"
    )
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


@pytest.fixture
def short_drain_server(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_server(tmp_path, "random:tiny", drain_seconds="0")
    yield server
    server.stop()


def test_a_stream_running_at_the_drain_deadline_ends_with_an_error_and_done(
    short_drain_server: RunningServer,
) -> None:
    body = {**LONG, "max_tokens": 2000}
    chunks = open_stream(short_drain_server, body)
    received = [next(chunks)]
    short_drain_server.process.send_signal(signal.SIGTERM)
    received.extend(chunks)  # ends by itself: the server ends the stream, not the client
    assert received[-1] == "[DONE]"
    final = json.loads(received[-2])
    assert final["error"]["code"] == "server_draining", final
    assert not any('"finish_reason": "length"' in c for c in received)  # it was cut short
    assert short_drain_server.process.wait(timeout=60) == 0


@pytest.fixture(scope="module")
def impatient_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Short header and body deadlines (server.py reads them from the environment)."""
    server = start_server(
        tmp_path_factory.mktemp("impatient"),
        "random:tiny",
        header_timeout_seconds="1",
        body_timeout_seconds="1",
    )
    yield server
    server.stop()


def _raw(server: RunningServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_slow_request_head_is_closed(impatient_server: RunningServer) -> None:
    with _raw(impatient_server) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        assert _read_all(sock) == b""  # closed by the server well before the 30 s timeout


def test_a_slow_body_is_answered_408(impatient_server: RunningServer) -> None:
    with _raw(impatient_server) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
            b'application/json\r\nContent-Length: 100\r\n\r\n{"prompt": '
        )
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"body_timeout"' in answer


def test_a_client_that_hangs_up_mid_body_is_no_500(impatient_server: RunningServer) -> None:
    with _raw(impatient_server) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
            b'application/json\r\nContent-Length: 1000\r\n\r\n{"messages": ['
        )
    route = '{route="/v1/chat/completions",status="499"}'
    wait_until(
        lambda: impatient_server.metrics().get(f"llmserve_requests_total{route}") == 1,
        "the hang-up to be counted as 499",
    )
    samples = impatient_server.metrics()
    assert not any('status="500"' in name for name in samples)
    log = impatient_server.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-2000:]


def test_tokenizing_a_huge_prompt_does_not_block_the_event_loop(
    impatient_server: RunningServer,
) -> None:
    """/tokenize takes seconds on a 3 MB prompt; /health must keep answering meanwhile. Counted
    from the moment the whole body is sent until the answer: tokenizing on the event loop
    leaves a handful of /health answers in that window (before tokenizing starts), a worker
    thread leaves thousands; 50 separates the two with a wide margin either way."""
    huge = json.dumps({"prompt": "hello world, this is text " * 120_000}).encode()
    uploaded = threading.Event()
    done: list[httpx.Response] = []

    def body() -> Iterator[bytes]:
        yield huge
        uploaded.set()

    def tokenize() -> None:
        with impatient_server.http() as http:
            done.append(
                http.post(
                    "/tokenize",
                    content=body(),
                    timeout=300,
                    headers={"Content-Type": "application/json"},
                )
            )

    worker = threading.Thread(target=tokenize)
    worker.start()
    answered_while_busy = 0
    with impatient_server.http() as http:
        while worker.is_alive():
            health = http.get("/health")
            assert health.status_code == 200
            if uploaded.is_set() and worker.is_alive():
                answered_while_busy += 1
    worker.join()
    assert done and done[0].status_code == 200 and done[0].json()["count"] > 100_000
    assert answered_while_busy >= 50, answered_while_busy

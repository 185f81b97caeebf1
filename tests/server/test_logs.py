"""What the server logs: JSON lines for a log pipeline, an access record per request with its
id, and no access records for probes and scrapes at INFO."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.llm_server import RunningServer, start_server


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(
        tmp_path_factory.mktemp("json-logs"), "random:tiny", log_format="json", log_level="info"
    )
    yield server
    server.stop()


def records(server: RunningServer, *request_ids: str) -> list[dict]:
    """Every record once the access records of `request_ids` are in."""
    log = server.log_once(
        lambda text: all(f'"request_id": "{rid}"' in text for rid in request_ids),
        f"access records of {request_ids}",
    )
    lines = [line for line in log.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:  # pragma: no cover - the assertion below says which
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    return parsed


def test_every_line_is_json_and_requests_are_logged_with_their_id(
    json_server: RunningServer,
) -> None:
    for path in ("/health", "/ready", "/metrics", "/ping"):
        assert httpx.get(json_server.url + path, timeout=30).status_code == 200
    reply = httpx.post(
        json_server.url + "/v1/completions",
        timeout=60,
        headers={"X-Request-Id": "trace-42"},
        json={"prompt": "hi", "max_tokens": 3},
    )
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == "trace-42"
    generated = httpx.post(
        json_server.url + "/v1/completions", timeout=60, json={"prompt": "hi", "max_tokens": 2}
    )
    new_id = generated.headers["x-request-id"]
    assert len(new_id) == 32 and new_id != "trace-42"

    logged = records(json_server, "trace-42", new_id)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in logged)
    access = [r for r in logged if r["logger"] == "llmserve.access"]
    mine = next(r for r in access if r["request_id"] == "trace-42")
    assert mine["route"] == "/v1/completions" and mine["status"] == 200
    assert mine["method"] == "POST" and mine["latency_ms"] > 0
    assert any(r["request_id"] == new_id for r in access)
    probed = {r["route"] for r in access}
    assert not probed & {"/health", "/ready", "/metrics", "/ping"}, probed


def test_a_bad_request_id_is_replaced(json_server: RunningServer) -> None:
    reply = httpx.get(
        json_server.url + "/v1/models", timeout=30, headers={"X-Request-Id": "x" * 65}
    )
    assert len(reply.headers["x-request-id"]) == 32


def test_text_logs_have_no_probe_lines(tmp_path: Path) -> None:
    server = start_server(tmp_path, "random:tiny", log_level="info")
    try:
        for _ in range(3):
            httpx.get(server.url + "/ready", timeout=30)
        httpx.get(server.url + "/v1/models", timeout=30)
        log = server.log_once(lambda text: "GET /v1/models 200" in text, "the /v1/models record")
    finally:
        server.stop()
    assert "GET /ready" not in log and "GET /health" not in log

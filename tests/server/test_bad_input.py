"""Hostile and careless input: every case is a 4xx with an OpenAI-style error body that names the
problem, never a 5xx, and the server keeps serving afterwards."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.llm_server import RunningServer

CHAT = "/v1/chat/completions"
OK_MESSAGES = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> bytes:
    return json.dumps({"messages": OK_MESSAGES, "max_tokens": 2, **fields}).encode()


CASES: list[tuple[str, str, bytes, int, str | None, str]] = [
    # (case, path, body, status, param, text the message must contain)
    ("malformed json", CHAT, b'{"messages": [', 400, None, "not valid JSON"),
    ("json array", CHAT, b"[1, 2]", 400, None, "JSON object"),
    ("invalid utf-8", CHAT, b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', 400,
     None, "UTF-8"),
    ("messages is a string", CHAT, json.dumps({"messages": "hi"}).encode(), 400, "messages",
     "'hi'"),
    ("empty messages", CHAT, json.dumps({"messages": []}).encode(), 400, "messages", "at least 1"),
    ("missing messages", CHAT, b"{}", 400, "messages", "required"),
    ("unknown role", CHAT, json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(),
     400, "messages.0.role", "'user'"),
    ("content is a number", CHAT,
     json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), 400,
     "messages.0.content", "5"),
    ("max_tokens as string", CHAT, chat(max_tokens="5"), 400, "max_tokens", "'5'"),
    ("max_tokens zero", CHAT, chat(max_tokens=0), 400, "max_tokens", "greater than or equal to 1"),
    ("absurd max_tokens", CHAT, chat(max_tokens=10**15), 400, "max_tokens", "allowed: 1.."),
    ("stream as string", CHAT, chat(stream="yes"), 400, "stream", "'yes'"),
    ("temperature too high", CHAT, chat(temperature=2.5), 400, "temperature", "2.5"),
    ("temperature negative", CHAT, chat(temperature=-0.1), 400, "temperature", "-0.1"),
    ("top_p zero", CHAT, chat(top_p=0), 400, "top_p", "greater than 0"),
    ("top_p above one", CHAT, chat(top_p=1.5), 400, "top_p", "1.5"),
    ("seed too big", CHAT, chat(seed=2**70), 400, "seed", str(2**70)),
    ("seed as float", CHAT, chat(seed=1.5), 400, "seed", "1.5"),
    ("five stop strings", CHAT, chat(stop=["a", "b", "c", "d", "e"]), 400, "stop", "at most 4"),
    ("empty stop string", CHAT, chat(stop=[""]), 400, "stop", "non-empty"),
    ("n above one", CHAT, chat(n=3), 400, "n", "allowed: 1"),
    ("presence penalty", CHAT, chat(presence_penalty=1.0), 400, "presence_penalty", "allowed: 0"),
    ("logprobs", CHAT, chat(logprobs=True), 400, "logprobs", "not supported"),
    ("unknown field", CHAT, chat(frobnicate=1), 400, "frobnicate", "unknown field"),
    ("min_tokens above max", CHAT, chat(min_tokens=5), 400, "min_tokens", "exceeds max_tokens"),
    ("stream_options without stream", CHAT, chat(stream_options={"include_usage": True}), 400,
     "stream_options", "stream is true"),
    ("wrong model", CHAT, chat(model="gpt-5"), 404, "model", "random-tiny"),
    ("completion token id out of range", "/v1/completions",
     json.dumps({"prompt": [1, 10**9]}).encode(), 400, "prompt", "out of range"),
    ("empty completion prompt", "/v1/completions", json.dumps({"prompt": ""}).encode(), 400,
     "prompt", "empty"),
    ("completion echo", "/v1/completions", json.dumps({"prompt": "a", "echo": True}).encode(),
     400, "echo", "not supported"),
]


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"]
    return error


@pytest.mark.parametrize(("case", "path", "body", "status", "param", "needle"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_request_is_refused_clearly(tiny_server: RunningServer, case: str, path: str,
                                        body: bytes, status: int, param: str | None,
                                        needle: str) -> None:
    with tiny_server.http() as http:
        response = http.post(path, content=body, headers={"Content-Type": "application/json"})
    error = assert_openai_error(response, status)
    assert error["param"] == param, error
    assert needle in error["message"], error


def test_prompt_longer_than_the_context_is_refused(tiny_server: RunningServer) -> None:
    long_text = "word " * 2000  # far beyond the 512-token context of this server
    with tiny_server.http() as http:
        response = http.post(CHAT, json={"messages": [{"role": "user", "content": long_text}]})
        completion = http.post("/v1/completions", json={"prompt": long_text})
    error = assert_openai_error(response, 400)
    assert error["code"] == "context_length_exceeded" and "512" in error["message"]
    assert assert_openai_error(completion, 400)["param"] == "prompt"


def test_huge_body_is_refused_before_it_is_read(tiny_server: RunningServer) -> None:
    huge = chat(user="x" * (5 * 1024 * 1024))
    with tiny_server.http() as http:
        response = http.post(CHAT, content=huge, headers={"Content-Type": "application/json"})
        chunked = http.post(CHAT, content=iter([huge[:1000], huge[1000:]]))  # no length header
    assert assert_openai_error(response, 413)["code"] == "body_too_large"
    assert assert_openai_error(chunked, 413)["code"] == "body_too_large"


def test_unknown_route_and_wrong_method(tiny_server: RunningServer) -> None:
    with tiny_server.http() as http:
        assert_openai_error(http.get("/v2/nothing"), 404)
        assert_openai_error(http.get(CHAT), 405)


def test_server_still_serves_after_all_that(tiny_server: RunningServer) -> None:
    with tiny_server.http() as http:
        for _case, path, body, _status, _param, _needle in CASES:
            assert http.post(path, content=body).status_code < 500
        assert http.get("/health").json() == {"status": "ok"}
        reply = http.post(CHAT, json={"messages": OK_MESSAGES, "max_tokens": 3})
    assert reply.status_code == 200
    assert reply.json()["usage"]["completion_tokens"] == 3

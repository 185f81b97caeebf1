"""Hostile and careless input: every case is a 4xx with an OpenAI-style error body that names the
problem, never a 5xx, and the server keeps serving afterwards. Unknown fields are not bad input
(they are accepted and ignored, as vLLM does: test_api_lenient.py); wrong values of known
fields are."""

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
    (
        "invalid utf-8",
        CHAT,
        b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',
        400,
        None,
        "UTF-8",
    ),
    (
        "messages is a string",
        CHAT,
        json.dumps({"messages": "hi"}).encode(),
        400,
        "messages",
        "'hi'",
    ),
    ("empty messages", CHAT, json.dumps({"messages": []}).encode(), 400, "messages", "at least 1"),
    ("missing messages", CHAT, b"{}", 400, "messages", "required"),
    (
        "unknown role",
        CHAT,
        json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(),
        400,
        "messages.0.role",
        "'user'",
    ),
    (
        "content is a number",
        CHAT,
        json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(),
        400,
        "messages.0.content",
        "5",
    ),
    ("max_tokens as string", CHAT, chat(max_tokens="5"), 400, "max_tokens", "'5'"),
    ("max_tokens zero", CHAT, chat(max_tokens=0), 400, "max_tokens", "at least 1"),
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
    ("n too large", CHAT, chat(n=129), 400, "n", "128"),
    ("presence penalty too high", CHAT, chat(presence_penalty=2.5), 400, "presence_penalty", "2.5"),
    ("frequency penalty too low", CHAT, chat(frequency_penalty=-3), 400, "frequency_penalty", "-3"),
    (
        "repetition penalty zero",
        CHAT,
        chat(repetition_penalty=0),
        400,
        "repetition_penalty",
        "greater than 0",
    ),
    ("top_k below -1", CHAT, chat(top_k=-2), 400, "top_k", "-2"),
    ("min_p above one", CHAT, chat(min_p=1.5), 400, "min_p", "1.5"),
    (
        "logit_bias key not a token id",
        CHAT,
        chat(logit_bias={"hello": 1}),
        400,
        "logit_bias",
        "not a token id",
    ),
    (
        "logit_bias token out of range",
        CHAT,
        chat(logit_bias={"99999999": 1}),
        400,
        "logit_bias",
        "out of range",
    ),
    ("logit_bias value too big", CHAT, chat(logit_bias={"5": 101}), 400, "logit_bias.5", "101"),
    (
        "stop_token_ids out of range",
        CHAT,
        chat(stop_token_ids=[10**9]),
        400,
        "stop_token_ids",
        "out of range",
    ),
    (
        "top_logprobs too many",
        CHAT,
        chat(logprobs=True, top_logprobs=21),
        400,
        "top_logprobs",
        "20",
    ),
    (
        "top_logprobs without logprobs",
        CHAT,
        chat(top_logprobs=2),
        400,
        "top_logprobs",
        "logprobs=true",
    ),
    ("logprobs as a string", CHAT, chat(logprobs="yes"), 400, "logprobs", "'yes'"),
    ("best_of above n", CHAT, chat(best_of=3), 400, "best_of", "equal to n"),
    (
        "response_format unknown type",
        CHAT,
        chat(response_format={"type": "yaml"}),
        400,
        "response_format.type",
        "json_schema",
    ),
    (
        "json_schema without its schema",
        CHAT,
        chat(response_format={"type": "json_schema"}),
        400,
        "response_format",
        "json_schema",
    ),
    (
        "tool_choice names no given tool",
        CHAT,
        chat(
            tools=[{"type": "function", "function": {"name": "f"}}],
            tool_choice={"type": "function", "function": {"name": "g"}},
        ),
        400,
        "tool_choice",
        "'f'",
    ),
    (
        "tool_choice required without tools",
        CHAT,
        chat(tool_choice="required"),
        400,
        "tool_choice",
        "at least one tool",
    ),
    (
        "user content null",
        CHAT,
        json.dumps({"messages": [{"role": "user", "content": None}]}).encode(),
        400,
        "messages.0",
        "content is null",
    ),
    (
        "tool message without tool_call_id",
        CHAT,
        json.dumps({"messages": [{"role": "tool", "content": "42"}]}).encode(),
        400,
        "messages.0",
        "tool_call_id",
    ),
    (
        "image content part",
        CHAT,
        json.dumps(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}],
                    }
                ]
            }
        ).encode(),
        400,
        "messages.0.content.0.type",
        "text-only",
    ),
    (
        "stream_options.continuous_usage_stats as string",
        CHAT,
        chat(stream=True, stream_options={"include_usage": True, "continuous_usage_stats": "y"}),
        400,
        "stream_options.continuous_usage_stats",
        "'y'",
    ),
    ("min_tokens above max", CHAT, chat(min_tokens=5), 400, "min_tokens", "exceeds max_tokens"),
    (
        "stream_options without stream",
        CHAT,
        chat(stream_options={"include_usage": True}),
        400,
        "stream_options",
        "stream is true",
    ),
    ("wrong model", CHAT, chat(model="gpt-5"), 404, "model", "random-tiny"),
    (
        "JSON nested 1000 deep",
        CHAT,
        b'{"messages": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        400,
        None,
        "levels deep",
    ),
    (
        "integer of 5000 digits",
        CHAT,
        b'{"messages": [], "seed": ' + b"9" * 5000 + b"}",
        400,
        None,
        "4300",
    ),
    (
        "completion token id out of range",
        "/v1/completions",
        json.dumps({"prompt": [1, 10**9]}).encode(),
        400,
        "prompt",
        "out of range",
    ),
    (
        "empty completion prompt",
        "/v1/completions",
        json.dumps({"prompt": ""}).encode(),
        400,
        "prompt",
        "empty",
    ),
    (
        "completion suffix",
        "/v1/completions",
        json.dumps({"prompt": "a", "suffix": "b"}).encode(),
        400,
        "suffix",
        "not supported",
    ),
    (
        "completion max_tokens 0 without echo",
        "/v1/completions",
        json.dumps({"prompt": "a", "max_tokens": 0}).encode(),
        400,
        "max_tokens",
        "echo=true",
    ),
    (
        "completion logprobs too many",
        "/v1/completions",
        json.dumps({"prompt": "a", "logprobs": 21}).encode(),
        400,
        "logprobs",
        "20",
    ),
    (
        "too many prompts x n",
        "/v1/completions",
        json.dumps({"prompt": ["a"] * 100, "n": 3}).encode(),
        400,
        "prompt",
        "at most 256",
    ),
    (
        "tokenize both prompt and messages",
        "/tokenize",
        json.dumps({"prompt": "a", "messages": OK_MESSAGES}).encode(),
        400,
        None,
        "exactly one",
    ),
    (
        "detokenize id out of range",
        "/detokenize",
        json.dumps({"tokens": [10**9]}).encode(),
        400,
        "tokens",
        "out of range",
    ),
]


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"]
    return error


@pytest.mark.parametrize(
    ("case", "path", "body", "status", "param", "needle"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_request_is_refused_clearly(
    tiny_server: RunningServer,
    case: str,
    path: str,
    body: bytes,
    status: int,
    param: str | None,
    needle: str,
) -> None:
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


def test_a_huge_model_name_is_not_echoed_whole(tiny_server: RunningServer) -> None:
    with tiny_server.http() as http:
        response = http.post(CHAT, content=chat(model="m" * 200_000))
    error = assert_openai_error(response, 404)
    assert error["code"] == "model_not_found"
    assert len(error["message"]) < 600 and "m" * 200 in error["message"]


def test_a_four_megabyte_prompt_is_refused_by_its_length(tiny_server: RunningServer) -> None:
    """Refused before tokenizing: far more characters than 512 tokens can hold."""
    huge = "word " * 800_000
    with tiny_server.http() as http:
        response = http.post(CHAT, json={"messages": [{"role": "user", "content": huge}]})
        completion = http.post("/v1/completions", json={"prompt": huge})
    for reply, param in ((response, "messages"), (completion, "prompt")):
        error = assert_openai_error(reply, 400)
        assert error["param"] == param and error["code"] == "context_length_exceeded"
        assert "max_model_len=512" in error["message"]


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

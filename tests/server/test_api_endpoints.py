"""The endpoints vLLM users script against: /v1/models/{id}, /tokenize, /detokenize, /version,
/ping, in vLLM's shapes."""

from __future__ import annotations

import httpx
from llmserve import __version__

from tests.llm_server import RunningServer

HELLO = [{"role": "user", "content": "hello there"}]


def test_models_carry_max_model_len_and_one_can_be_fetched(tiny_server: RunningServer) -> None:
    with tiny_server.http() as http:
        listed = http.get("/v1/models").json()["data"]
        one = http.get("/v1/models/random-tiny")
        missing = http.get("/v1/models/" + "x" * 5000)
    assert [m["max_model_len"] for m in listed] == [512]
    assert one.status_code == 200 and one.json() == listed[0]
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == "model_not_found" and len(error["message"]) < 600


def test_tokenize_and_detokenize_round_trip(tiny_server: RunningServer) -> None:
    with tiny_server.http() as http:
        tokens = http.post("/tokenize", json={"prompt": "hello world"}).json()
        strs = http.post(
            "/tokenize",
            json={"model": "random-tiny", "prompt": "hello world", "return_token_strs": True},
        ).json()
        back = http.post("/detokenize", json={"tokens": tokens["tokens"]}).json()
        wrong = http.post("/tokenize", json={"model": "nope", "prompt": "x"})
    assert set(tokens) == {"count", "max_model_len", "tokens"}
    assert tokens["count"] == len(tokens["tokens"]) > 0 and tokens["max_model_len"] == 512
    assert "".join(strs["token_strs"]) == "hello world"
    assert back == {"prompt": "hello world"}
    assert wrong.status_code == 404


def test_tokenize_messages_counts_what_chat_would_send(tiny_server: RunningServer) -> None:
    with tiny_server.http() as http:
        counted = http.post("/tokenize", json={"messages": HELLO}).json()
        chat = http.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 1}).json()
        no_prompt = http.post(
            "/tokenize", json={"messages": HELLO, "add_generation_prompt": False}
        ).json()
    assert counted["count"] == chat["usage"]["prompt_tokens"]
    assert no_prompt["count"] < counted["count"]


def test_version_and_ping(tiny_server: RunningServer) -> None:
    assert httpx.get(tiny_server.url + "/version").json() == {"version": __version__}
    assert httpx.get(tiny_server.url + "/ping").status_code == 200
    assert httpx.post(tiny_server.url + "/ping").status_code == 200


def test_tokenize_needs_the_key_when_one_is_set(guarded_server: RunningServer) -> None:
    assert httpx.post(guarded_server.url + "/tokenize", json={"prompt": "x"}).status_code == 401
    with guarded_server.http() as http:
        assert http.post("/tokenize", json={"prompt": "x"}).status_code == 200
        assert http.get("/v1/models/random-tiny").status_code == 200
    assert httpx.get(guarded_server.url + "/version").status_code == 200

"""Behaviour that needs the engine to honour SamplingParams (ENG12's work): logprobs values,
penalties, logit_bias, stop_token_ids, top_k, and constrained decoding (response_format,
guided_json, forced tools, openai's parse, langchain's with_structured_output) on a random
model. Written against the wire format the API layer already produces; these fail on an engine
that ignores the fields, and pass once it honours them."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from tests.llm_server import RunningServer

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Tell me about the weather."}]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def post(server: RunningServer, path: str, **body: Any) -> dict[str, Any]:
    with server.http() as http:
        response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_chat_logprobs_one_per_token_best_first(tiny_server: RunningServer) -> None:
    reply = post(
        tiny_server,
        CHAT,
        messages=HELLO,
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    content = reply["choices"][0]["logprobs"]["content"]
    assert len(content) == reply["usage"]["completion_tokens"] == 6
    for entry in content:
        assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 3
        tops = [t["logprob"] for t in entry["top_logprobs"]]
        assert tops == sorted(tops, reverse=True)
        assert entry["top_logprobs"][0]["token"] == entry["token"]  # greedy picks the best
        assert entry["bytes"] == list(entry["token"].encode())
    text = "".join(e["token"] for e in content)
    assert text == reply["choices"][0]["message"]["content"]


def test_completion_echo_logprobs_score_the_prompt(tiny_server: RunningServer) -> None:
    reply = post(
        tiny_server,
        "/v1/completions",
        prompt="The cat sat on the mat",
        max_tokens=0,
        echo=True,
        logprobs=1,
    )
    lp = reply["choices"][0]["logprobs"]
    assert lp["token_logprobs"][0] is None
    assert all(isinstance(v, float) and v <= 0 for v in lp["token_logprobs"][1:])
    generated = post(
        tiny_server, "/v1/completions", prompt="The cat", max_tokens=4, temperature=0, logprobs=2
    )
    lp = generated["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == 4 and all(len(t) >= 1 for t in lp["top_logprobs"])


def test_logit_bias_forces_a_token(tiny_server: RunningServer) -> None:
    reply = post(
        tiny_server,
        "/v1/completions",
        prompt="Hello",
        max_tokens=5,
        temperature=0,
        logit_bias={"1000": 100},
    )
    with tiny_server.http() as http:
        token = http.post("/detokenize", json={"tokens": [1000]}).json()["prompt"]
    assert reply["choices"][0]["text"] == token * 5


def test_stop_token_ids_end_with_stop(tiny_server: RunningServer) -> None:
    free = post(
        tiny_server, "/v1/completions", prompt="Hello", max_tokens=8, temperature=0, logprobs=0
    )
    with tiny_server.http() as http:
        ids = http.post(
            "/tokenize", json={"prompt": free["choices"][0]["text"], "add_special_tokens": False}
        ).json()["tokens"]
    cut = post(
        tiny_server,
        "/v1/completions",
        prompt="Hello",
        max_tokens=8,
        temperature=0,
        stop_token_ids=[ids[2]],
    )
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["usage"]["completion_tokens"] <= 3


def test_penalties_change_greedy_output(tiny_server: RunningServer) -> None:
    # Random weights never repeat a token in 24 greedy steps, so there is nothing to penalize:
    # bias the first token just enough that greedy output repeats it, then each penalty must
    # break that repetition.
    prompt = {"prompt": "a a a a", "max_tokens": 24, "temperature": 0}
    first = post(tiny_server, "/v1/completions", **prompt)["choices"][0]["text"]
    with tiny_server.http() as http:
        token = http.post("/tokenize", json={"prompt": first, "add_special_tokens": False}).json()[
            "tokens"
        ][0]
    for bias in range(1, 40):
        biased = post(
            tiny_server, "/v1/completions", **prompt, logprobs=0, logit_bias={str(token): bias}
        )
        ids = biased["choices"][0]["logprobs"]["tokens"]
        if len(ids) != len(set(ids)):
            break
    else:
        raise AssertionError("no bias up to 39 made greedy output repeat a token")
    base = biased["choices"][0]["text"]
    for field in ("repetition_penalty", "presence_penalty", "frequency_penalty"):
        changed = post(
            tiny_server, "/v1/completions", **prompt, logit_bias={str(token): bias}, **{field: 2.0}
        )
        assert changed["choices"][0]["text"] != base, field


def test_top_k_one_is_greedy(tiny_server: RunningServer) -> None:
    greedy = post(tiny_server, CHAT, messages=HELLO, max_tokens=10, temperature=0)
    top1 = post(tiny_server, CHAT, messages=HELLO, max_tokens=10, temperature=1.0, top_k=1, seed=5)
    assert top1["choices"][0]["message"] == greedy["choices"][0]["message"]


def test_json_object_is_valid_json(tiny_server: RunningServer) -> None:
    reply = post(
        tiny_server, CHAT, messages=HELLO, max_tokens=200, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(reply["choices"][0]["message"]["content"]), dict)


@pytest.mark.parametrize("how", ["response_format", "guided_json"])
def test_json_schema_is_followed(tiny_server: RunningServer, how: str) -> None:
    extra: dict[str, Any] = (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "person", "schema": PERSON},
            }
        }
        if how == "response_format"
        else {"guided_json": PERSON}
    )
    reply = post(tiny_server, CHAT, messages=HELLO, max_tokens=200, **extra)
    jsonschema.validate(json.loads(reply["choices"][0]["message"]["content"]), PERSON)


def test_forced_and_required_tool_arguments_follow_the_schema(tiny_server: RunningServer) -> None:
    schema = WEATHER["function"]["parameters"]
    named = post(
        tiny_server,
        CHAT,
        messages=HELLO,
        max_tokens=200,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    call = named["choices"][0]["message"]["tool_calls"][0]
    jsonschema.validate(json.loads(call["function"]["arguments"]), schema)
    required = post(
        tiny_server, CHAT, messages=HELLO, max_tokens=200, tools=[WEATHER], tool_choice="required"
    )
    message = required["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"
    jsonschema.validate(json.loads(message["tool_calls"][0]["function"]["arguments"]), schema)
    assert required["choices"][0]["finish_reason"] == "tool_calls"


class Person(BaseModel):
    name: str
    age: int


def test_openai_parse_with_a_pydantic_model(tiny_server: RunningServer) -> None:
    client = tiny_server.client()
    parse = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse
    reply = parse(model="random-tiny", messages=HELLO, response_format=Person, max_tokens=200)
    assert isinstance(reply.choices[0].message.parsed, Person)


def test_langchain_with_structured_output(tiny_server: RunningServer) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=f"{tiny_server.url}/v1",
        api_key="unused",  # type: ignore
        model="random-tiny",
        max_tokens=200,
        max_retries=0,
    )
    person = llm.with_structured_output(Person).invoke("Invent a person.")
    assert isinstance(person, Person)
    tool_person = llm.with_structured_output(Person, method="function_calling").invoke("Invent.")
    assert isinstance(tool_person, Person)

"""The wire format of every request field the ecosystem sends, over real HTTP: unknown fields
accepted and logged once, explicit nulls, n > 1, batches of prompts, echo, logprobs shapes,
continuous usage; and, in process, that each field reaches SamplingParams."""

from __future__ import annotations

import json
from typing import Any

import pytest
from llmserve import protocol
from llmserve.engine_api import SamplingParams, StructuredOutput
from llmserve.params import per_choice, sampling, structured

from tests.llm_server import RunningServer

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Say something."}]


def post(server: RunningServer, path: str, **body: Any) -> dict[str, Any]:
    with server.http() as http:
        response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def sse_events(server: RunningServer, path: str, **body: Any) -> list[dict[str, Any]]:
    with server.http() as http, http.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        lines = [
            line.removeprefix("data: ")
            for line in response.iter_lines()
            if line.startswith("data: ")
        ]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_unknown_fields_are_accepted_ignored_and_logged_once(tiny_server: RunningServer) -> None:
    extras = {
        "store": True,
        "metadata": {"a": "b"},
        "reasoning_effort": "low",
        "service_tier": "auto",
        "zz_unknown_field_for_test": 1,
    }
    for _ in range(3):
        reply = post(
            tiny_server,
            CHAT,
            messages=[{"role": "user", "content": "hi", "zz_nested_unknown": 1}],
            max_tokens=2,
            **extras,
        )
        assert reply["usage"]["completion_tokens"] == 2
    log = tiny_server.log()
    assert log.count("'zz_unknown_field_for_test'") == 1
    assert log.count("'messages.zz_nested_unknown'") == 1
    assert "WARNING" in log.split("'zz_unknown_field_for_test'")[0].splitlines()[-1]


def test_explicit_nulls_mean_the_defaults(tiny_server: RunningServer) -> None:
    nulls = dict.fromkeys(
        (
            "temperature",
            "top_p",
            "n",
            "stop",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "logit_bias",
            "user",
            "response_format",
            "top_k",
            "min_p",
            "repetition_penalty",
            "stop_token_ids",
            "min_tokens",
            "tools",
            "tool_choice",
            "stream_options",
            "parallel_tool_calls",
            "top_logprobs",
        )
    )
    reply = post(tiny_server, CHAT, messages=HELLO, max_tokens=3, **nulls)
    assert len(reply["choices"]) == 1 and reply["usage"]["completion_tokens"] == 3


def test_every_sampling_field_is_accepted(tiny_server: RunningServer) -> None:
    fields = {
        "top_k": 20,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logit_bias": {"42": 5, "7": -100},
        "stop_token_ids": [2],
        "seed": 7,
        "min_tokens": 2,
        "ignore_eos": True,
        "temperature": 0.7,
        "top_p": 0.9,
        "user": "u1",
        "best_of": 1,
        "response_format": {"type": "text"},
    }
    chat = post(tiny_server, CHAT, messages=HELLO, max_tokens=4, **fields)
    done = post(tiny_server, "/v1/completions", prompt="Once", max_tokens=4, **fields)
    assert chat["usage"]["completion_tokens"] == done["usage"]["completion_tokens"] == 4


def test_n_choices_are_indexed_and_counted(tiny_server: RunningServer) -> None:
    reply = post(tiny_server, CHAT, messages=HELLO, max_tokens=6, n=3, seed=11, temperature=1.0)
    assert [c["index"] for c in reply["choices"]] == [0, 1, 2]
    assert reply["usage"]["completion_tokens"] == 18
    texts = [c["message"]["content"] for c in reply["choices"]]
    assert len(set(texts)) > 1  # seed, seed+1, seed+2: different samples
    again = post(tiny_server, CHAT, messages=HELLO, max_tokens=6, n=3, seed=11, temperature=1.0)
    assert [c["message"]["content"] for c in again["choices"]] == texts  # reproducible


def test_n_choices_stream_with_their_own_index(tiny_server: RunningServer) -> None:
    whole = post(tiny_server, CHAT, messages=HELLO, max_tokens=8, n=2, temperature=0)
    events = sse_events(
        tiny_server,
        CHAT,
        messages=HELLO,
        max_tokens=8,
        n=2,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts = ["", ""]
    finishes: dict[int, list[Any]] = {0: [], 1: []}
    for event in events:
        for choice in event["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
            finishes[choice["index"]].append(choice["finish_reason"])
    assert texts == [c["message"]["content"] for c in whole["choices"]]
    for index in (0, 1):
        assert finishes[index][-1] == "length" and not any(finishes[index][:-1])
    assert events[-1]["choices"] == [] and events[-1]["usage"] == whole["usage"]


def test_a_batch_of_prompts_times_n(tiny_server: RunningServer) -> None:
    reply = post(
        tiny_server,
        "/v1/completions",
        prompt=["The sea", "A cat", "Rain"],
        n=2,
        max_tokens=3,
        temperature=0,
    )
    assert [c["index"] for c in reply["choices"]] == list(range(6))
    singles = [
        post(tiny_server, "/v1/completions", prompt=p, max_tokens=3, temperature=0)
        for p in ("The sea", "A cat", "Rain")
    ]
    for i, single in enumerate(singles):
        for j in (0, 1):  # choice index = prompt index x n + j
            assert reply["choices"][i * 2 + j]["text"] == single["choices"][0]["text"]
    assert reply["usage"]["prompt_tokens"] == sum(s["usage"]["prompt_tokens"] for s in singles)
    assert reply["usage"]["completion_tokens"] == 18
    ids = post(tiny_server, "/v1/completions", prompt=[[42, 43], [44]], max_tokens=2)
    assert len(ids["choices"]) == 2 and ids["usage"]["prompt_tokens"] == 3


def test_echo_puts_the_prompt_first_and_scores_with_max_tokens_0(
    tiny_server: RunningServer,
) -> None:
    plain = post(tiny_server, "/v1/completions", prompt="Echo me", max_tokens=4, temperature=0)
    echoed = post(
        tiny_server, "/v1/completions", prompt="Echo me", max_tokens=4, temperature=0, echo=True
    )
    assert echoed["choices"][0]["text"] == "Echo me" + plain["choices"][0]["text"]
    scored = post(
        tiny_server, "/v1/completions", prompt="Echo me", max_tokens=0, echo=True, logprobs=1
    )
    choice = scored["choices"][0]
    assert choice["text"] == "Echo me" and scored["usage"]["completion_tokens"] == 0
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == "Echo me"
    assert len(logprobs["tokens"]) == scored["usage"]["prompt_tokens"]
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    assert logprobs["text_offset"][0] == 0
    streamed = sse_events(
        tiny_server,
        "/v1/completions",
        prompt="Echo me",
        max_tokens=4,
        temperature=0,
        echo=True,
        stream=True,
    )
    assert "".join(c["choices"][0]["text"] for c in streamed) == echoed["choices"][0]["text"]


def test_logprobs_have_openai_shapes(tiny_server: RunningServer) -> None:
    chat = post(tiny_server, CHAT, messages=HELLO, max_tokens=3, logprobs=True, top_logprobs=2)
    assert isinstance(chat["choices"][0]["logprobs"]["content"], list)
    plain = post(tiny_server, CHAT, messages=HELLO, max_tokens=3)
    assert plain["choices"][0]["logprobs"] is None
    done = post(tiny_server, "/v1/completions", prompt="Hi", max_tokens=3, logprobs=2)
    assert set(done["choices"][0]["logprobs"]) == {
        "tokens",
        "token_logprobs",
        "top_logprobs",
        "text_offset",
    }


def test_continuous_usage_stats_on_every_chunk(tiny_server: RunningServer) -> None:
    events = sse_events(
        tiny_server,
        CHAT,
        messages=HELLO,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True, "continuous_usage_stats": True},
    )
    assert all("usage" in e for e in events)
    counts = [e["usage"]["completion_tokens"] for e in events]
    assert counts == sorted(counts) and counts[-1] == 5
    assert events[-1]["choices"] == []
    done = sse_events(
        tiny_server,
        "/v1/completions",
        prompt="x",
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True, "continuous_usage_stats": True},
    )
    assert all("usage" in e for e in done) and done[-1]["usage"]["completion_tokens"] == 5


# ------------------------------------------------------------------- in process: the mapping
def _chat(**fields: Any) -> protocol.ChatCompletionRequest:
    return protocol.ChatCompletionRequest.model_validate_json(
        json.dumps({"messages": HELLO, **fields})
    )


def test_each_field_reaches_sampling_params() -> None:
    body = _chat(
        temperature=0.3,
        top_p=0.8,
        seed=5,
        stop=["x"],
        ignore_eos=True,
        min_tokens=2,
        top_k=7,
        min_p=0.1,
        presence_penalty=1.5,
        frequency_penalty=-1.0,
        repetition_penalty=1.2,
        logit_bias={"3": 4.5, "9": -100},
        stop_token_ids=[1, 2],
    )
    params = sampling(
        body, max_tokens=10, vocab_size=100, logprobs=3, structured_output=structured(body)
    )
    assert params == SamplingParams(
        max_tokens=10,
        temperature=0.3,
        top_p=0.8,
        seed=5,
        stop=("x",),
        ignore_eos=True,
        min_tokens=2,
        top_k=7,
        min_p=0.1,
        presence_penalty=1.5,
        frequency_penalty=-1.0,
        repetition_penalty=1.2,
        logit_bias=((3, 4.5), (9, -100.0)),
        stop_token_ids=(1, 2),
        logprobs=3,
        prompt_logprobs=None,
        structured=None,
    )
    assert sampling(_chat(top_k=-1), max_tokens=1, vocab_size=10, logprobs=None).top_k == 0


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"response_format": {"type": "json_object"}}, StructuredOutput("json_object")),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "object"}},
                }
            },
            StructuredOutput("json_schema", '{"type": "object"}'),
        ),
        ({"guided_json": {"type": "array"}}, StructuredOutput("json_schema", '{"type": "array"}')),
        (
            {"guided_json": '{"type": "array"}'},
            StructuredOutput("json_schema", '{"type": "array"}'),
        ),
        ({"response_format": {"type": "text"}}, None),
    ],
)
def test_response_formats_become_structured_outputs(
    fields: dict[str, Any], expected: StructuredOutput | None
) -> None:
    assert structured(_chat(**fields)) == expected


def test_seeds_per_choice_wrap_inside_the_range() -> None:
    params = SamplingParams(max_tokens=1, seed=2**64 - 2)
    assert [p.seed for p in per_choice(params, 3)] == [2**64 - 2, 2**64 - 1, -(2**63)]
    assert [p.seed for p in per_choice(SamplingParams(max_tokens=1), 2)] == [None, None]

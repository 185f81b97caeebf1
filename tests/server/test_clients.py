"""The clients our users run, against a real server: the official openai client (forced tool
calls, n, logprobs), langchain-openai (invoke, stream, bind_tools), guidellm 0.8.1 (a short
synchronous run with zero errors, in its own venv: its click pin conflicts with the main one),
and the request bodies of `vllm bench serve` (vllm/benchmarks/lib/endpoint_request_func.py:
completions send repetition_penalty 1.0, logprobs null, stream with include_usage; chat sends
content parts and max_completion_tokens). What needs the engine's constrained decoding (parse
with a pydantic model, with_structured_output) is in test_api_needs_engine.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.llm_server import REPO_ROOT, RunningServer
from tests.server.tool_specs import WEATHER

HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]
GUIDELLM = "guidellm==0.8.1"
GUIDELLM_VENV = REPO_ROOT / "build" / "guidellm-venv"


# ------------------------------------------------------------------- openai
def test_openai_n_choices(tiny_server: RunningServer) -> None:
    reply = tiny_server.client().chat.completions.create(
        model="random-tiny", messages=HELLO, max_tokens=4, n=3, seed=3
    )  # type: ignore[arg-type]
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert reply.usage is not None and reply.usage.completion_tokens == 12


def test_openai_logprobs_parse(tiny_server: RunningServer) -> None:
    reply = tiny_server.client().chat.completions.create(
        model="random-tiny", messages=HELLO, max_tokens=4, logprobs=True, top_logprobs=3
    )  # type: ignore[arg-type]
    assert reply.choices[0].logprobs is not None
    assert isinstance(reply.choices[0].logprobs.content, list)
    done = tiny_server.client().completions.create(
        model="random-tiny", prompt="Hi", max_tokens=3, logprobs=2, echo=True
    )
    assert done.choices[0].logprobs is not None and done.choices[0].logprobs.tokens


def test_openai_forced_tool_call(tiny_server: RunningServer) -> None:
    reply = tiny_server.client().chat.completions.create(
        model="random-tiny",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        max_tokens=8,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    calls = reply.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"


def test_openai_auto_tools_and_the_extras_agents_send(tiny_server: RunningServer) -> None:
    reply = tiny_server.client().chat.completions.create(
        model="random-tiny",
        messages=HELLO,
        tools=[WEATHER],
        tool_choice="auto",
        parallel_tool_calls=False,
        store=False,
        user="u",
        max_tokens=4,  # type: ignore[arg-type]
        metadata={"k": "v"},
        response_format={"type": "text"},
    )
    assert reply.choices[0].finish_reason in ("length", "stop", "tool_calls")


# ------------------------------------------------------------------- langchain-openai
def _chat_model(server: RunningServer, **kwargs: Any) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=f"{server.url}/v1",
        api_key="unused",
        model="random-tiny",
        max_retries=0,
        timeout=120,
        **kwargs,
    )  # type: ignore[arg-type]


def test_langchain_invoke_and_stream(tiny_server: RunningServer) -> None:
    llm = _chat_model(tiny_server, max_tokens=6, temperature=0)
    answer = llm.invoke("Say hello.")
    assert answer.content and answer.usage_metadata["output_tokens"] == 6
    streaming = _chat_model(tiny_server, max_tokens=6, temperature=0, stream_usage=True)
    parts = list(streaming.stream("Say hello."))
    assert "".join(str(p.content) for p in parts) == answer.content
    assert sum(p.usage_metadata["output_tokens"] for p in parts if p.usage_metadata) == 6


def test_langchain_bind_tools(tiny_server: RunningServer) -> None:
    llm = _chat_model(tiny_server, max_tokens=8)
    bound = llm.bind_tools([WEATHER], tool_choice="get_weather")
    answer = bound.invoke("Weather in Paris?")
    calls = answer.tool_calls + answer.invalid_tool_calls  # args are random text until the
    assert [c["name"] for c in calls] == ["get_weather"]  # engine constrains them
    auto = llm.bind_tools([WEATHER]).invoke("Weather in Paris?")
    assert auto.response_metadata["finish_reason"] in ("length", "stop", "tool_calls")


# ------------------------------------------------------------------- vllm bench serve payloads
def test_vllm_bench_completions_payload(tiny_server: RunningServer) -> None:
    payload = {
        "model": "random-tiny",
        "prompt": "The quick brown fox",
        "repetition_penalty": 1.0,
        "max_tokens": 8,
        "logprobs": None,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    with (
        tiny_server.http() as http,
        http.stream("POST", "/v1/completions", json=payload) as response,
    ):
        assert response.status_code == 200, response.read()
        lines = [
            ln.removeprefix("data: ") for ln in response.iter_lines() if ln.startswith("data: ")
        ]
    assert lines[-1] == "[DONE]"
    usage = [json.loads(ln)["usage"] for ln in lines[:-1] if json.loads(ln).get("usage")]
    assert usage[-1]["completion_tokens"] == 8


def test_vllm_bench_chat_payload(tiny_server: RunningServer) -> None:
    payload = {
        "model": "random-tiny",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "max_completion_tokens": 8,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    with (
        tiny_server.http() as http,
        http.stream("POST", "/v1/chat/completions", json=payload) as response,
    ):
        assert response.status_code == 200, response.read()
        events = [
            json.loads(ln.removeprefix("data: "))
            for ln in response.iter_lines()
            if ln.startswith("data: {")
        ]
    assert events[-1]["usage"]["completion_tokens"] == 8


# ------------------------------------------------------------------- guidellm
def _guidellm() -> Path:
    """guidellm in its own venv under build/ (created on first use: a fresh CI machine has
    none), because guidellm 0.8.1 pins click~=8.4 and the main venv has a newer click."""
    binary = GUIDELLM_VENV / "bin" / "guidellm"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(GUIDELLM_VENV)], check=True)
        subprocess.run(
            [str(GUIDELLM_VENV / "bin" / "python"), "-m", "pip", "install", "-q", GUIDELLM],
            check=True,
            timeout=900,
        )
    return binary


@pytest.mark.timeout(1200)
def test_guidellm_synchronous_run_has_no_errors(tiny_server: RunningServer, tmp_path: Path) -> None:
    from llmserve.models import bundled_smollm2_gguf, load_gguf_tokenizer

    tokenizer_dir = tmp_path / "tokenizer"  # guidellm counts tokens locally: no hub access
    load_gguf_tokenizer(bundled_smollm2_gguf()).save_pretrained(tokenizer_dir)
    out = tmp_path / "guidellm.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [
            str(_guidellm()),
            "run",
            "--backend",
            f"kind=openai_http,target={tiny_server.url}",
            "--profile",
            "kind=synchronous",
            "--constraint",
            "kind=max_requests,count=6",
            "--data",
            "kind=synthetic_text,prompt_tokens=16,output_tokens=8",
            "--tokenizer",
            f"kind=hf_auto,model={tokenizer_dir}",
            "--disable-console-interactive",
            "--output",
            f"kind=json,path={out}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    state = json.loads(out.read_text())["benchmarks"][0]["scheduler_state"]
    assert state["successful_requests"] == 6 and state["errored_requests"] == 0, state

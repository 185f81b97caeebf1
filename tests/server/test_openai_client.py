"""The official `openai` client against the running server: what our users' code will do."""

from __future__ import annotations

import re

import httpx
import openai
import pytest

from tests.llm_server import IMAGE_DIR, RunningServer

HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]


def test_models_lists_the_served_model(tiny_server: RunningServer) -> None:
    models = tiny_server.client().models.list()
    assert [m.id for m in models.data] == ["random-tiny"]


def test_chat_completion_returns_text_and_counts_tokens(tiny_server: RunningServer) -> None:
    reply = tiny_server.client().chat.completions.create(
        model="random-tiny", messages=HELLO, max_tokens=12, temperature=0
    )  # type: ignore[arg-type]
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason == "length"  # random weights rarely say EOS in 12 tokens
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 12
    assert reply.usage.prompt_tokens > 10  # the chat template adds a system turn
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 12


def test_streaming_chat_matches_the_non_streaming_answer(tiny_server: RunningServer) -> None:
    client = tiny_server.client()
    whole = client.chat.completions.create(
        model="random-tiny", messages=HELLO, max_tokens=16, temperature=0
    )  # type: ignore[arg-type]
    chunks = list(
        client.chat.completions.create(
            model="random-tiny",
            messages=HELLO,
            max_tokens=16,
            temperature=0,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and all(f is None for f in finishes[:-1])
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    assert usage_chunks[0].choices == []
    assert usage_chunks[0].usage == whole.usage


def test_streaming_without_include_usage_sends_no_usage(tiny_server: RunningServer) -> None:
    chunks = list(
        tiny_server.client().chat.completions.create(
            model="random-tiny", messages=HELLO, max_tokens=4, stream=True
        )
    )  # type: ignore[arg-type]
    assert chunks and all(c.usage is None for c in chunks)


def test_completions_stream_and_not(tiny_server: RunningServer) -> None:
    client = tiny_server.client()
    whole = client.completions.create(
        model="random-tiny", prompt="Once upon a time", max_tokens=10, temperature=0
    )
    assert whole.choices[0].text and whole.usage is not None
    assert whole.usage.completion_tokens == 10
    streamed = list(
        client.completions.create(
            model="random-tiny",
            prompt="Once upon a time",
            max_tokens=10,
            temperature=0,
            stream=True,
        )
    )
    assert "".join(c.choices[0].text for c in streamed) == whole.choices[0].text
    assert streamed[-1].choices[0].finish_reason == "length"


def test_completions_accept_token_ids(tiny_server: RunningServer) -> None:
    reply = tiny_server.client().completions.create(
        model="random-tiny", prompt=[42, 43, 44], max_tokens=3, temperature=0
    )
    assert reply.usage is not None and reply.usage.prompt_tokens == 3


def test_same_seed_same_text_other_seed_other_text(tiny_server: RunningServer) -> None:
    client = tiny_server.client()

    def sample(seed: int) -> str:
        reply = client.chat.completions.create(
            model="random-tiny",
            messages=HELLO,
            max_tokens=16,  # type: ignore[arg-type]
            temperature=1.0,
            top_p=0.95,
            seed=seed,
        )
        return reply.choices[0].message.content or ""

    first = sample(1234)
    assert sample(1234) == first
    assert sample(4321) != first


def test_stop_string_ends_the_answer_before_it(tiny_server: RunningServer) -> None:
    client = tiny_server.client()
    free = (
        client.completions.create(
            model="random-tiny", prompt="The weather", max_tokens=24, temperature=0
        )
        .choices[0]
        .text
    )
    word = re.search(r"[A-Za-z]{3,}", free[len(free) // 3 :])
    assert word, f"no word to stop at in {free!r}"
    stop = word.group()[:3]
    expected = free[: free.index(stop)]
    cut = client.completions.create(
        model="random-tiny", prompt="The weather", max_tokens=24, temperature=0, stop=[stop]
    )
    assert cut.choices[0].text == expected
    assert cut.choices[0].finish_reason == "stop"
    streamed = list(
        client.completions.create(
            model="random-tiny",
            prompt="The weather",
            max_tokens=24,
            temperature=0,
            stop=stop,
            stream=True,
        )
    )
    assert "".join(c.choices[0].text for c in streamed) == expected


def test_min_tokens_with_ignore_eos_forces_the_full_length(tiny_server: RunningServer) -> None:
    reply = tiny_server.client().chat.completions.create(
        model="random-tiny",
        messages=HELLO,
        max_tokens=40,  # type: ignore[arg-type]
        extra_body={"ignore_eos": True, "min_tokens": 40},
    )
    assert reply.usage is not None and reply.usage.completion_tokens == 40


def test_errors_come_back_as_openai_errors(tiny_server: RunningServer) -> None:
    client = tiny_server.client()
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="random-tiny",
            messages=HELLO,  # type: ignore[arg-type]
            temperature=2.5,
        )
    assert bad.value.code == "invalid_value"
    assert bad.value.param == "temperature"
    assert "2.5" in bad.value.message and "2" in bad.value.message
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    assert missing.value.code == "model_not_found" and "random-tiny" in missing.value.message
    with pytest.raises(openai.BadRequestError) as unsupported:
        client.chat.completions.create(
            model="random-tiny",
            messages=HELLO,  # type: ignore[arg-type]
            n=200,
        )
    assert unsupported.value.param == "n"


def test_api_key_is_required_when_configured(guarded_server: RunningServer) -> None:
    with pytest.raises(openai.AuthenticationError) as wrong:
        openai.OpenAI(
            base_url=f"{guarded_server.url}/v1", api_key="sk-wrong", max_retries=0
        ).models.list()
    assert wrong.value.code == "invalid_api_key"
    assert [m.id for m in guarded_server.client().models.list().data] == ["random-tiny"]


def test_health_ready_and_metrics_need_no_key(guarded_server: RunningServer) -> None:
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(guarded_server.url + path).status_code == 200, path
    assert httpx.get(guarded_server.url + "/v1/models").status_code == 401


def test_bundled_smollm2_answers_a_real_question(smollm2_server: RunningServer) -> None:
    # Loading the GGUF takes seconds: meanwhile the process is alive but not ready.
    assert (200, 503, "loading") in smollm2_server.startup
    assert smollm2_server.startup[-1] == (200, 200, "ready")
    client = smollm2_server.client()
    assert [m.id for m in client.models.list().data] == ["SmolLM2-135M-Instruct.Q4_1"]
    reply = client.chat.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1",
        temperature=0,
        max_tokens=24,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.choices[0].finish_reason == "stop"  # a real model ends its answer itself


def test_metrics_count_requests_tokens_and_latency(tiny_server: RunningServer) -> None:
    client = tiny_server.client()
    client.completions.create(model="random-tiny", prompt="count me", max_tokens=5)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="random-tiny", prompt="count me", max_tokens=0)
    samples = tiny_server.metrics()
    model = '{model_name="random-tiny"}'
    assert samples['llmserve_requests_total{route="/v1/completions",status="200"}'] >= 1
    assert samples['llmserve_requests_total{route="/v1/completions",status="400"}'] >= 1
    assert samples[f"vllm:generation_tokens_total{model}"] >= 5
    assert samples[f"vllm:prompt_tokens_total{model}"] >= 2
    assert samples[f"vllm:time_to_first_token_seconds_count{model}"] >= 1
    assert samples[f"vllm:inter_token_latency_seconds_count{model}"] >= 4
    assert samples[f"vllm:e2e_request_latency_seconds_count{model}"] >= 1
    assert (
        samples['vllm:request_success_total{finished_reason="length",model_name="random-tiny"}']
        >= 1
    )
    for gauge in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
    ):
        assert f"{gauge}{model}" in samples


def test_chat_page_and_its_static_files_are_served(tiny_server: RunningServer) -> None:
    page = httpx.get(tiny_server.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    root = IMAGE_DIR / "llmserve" / "static"
    static = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert "favicon.svg" in static and "vendor/dompurify-3.5.0/purify.min.js" in static
    for name in static:
        assert httpx.get(f"{tiny_server.url}/static/{name}").status_code == 200, name

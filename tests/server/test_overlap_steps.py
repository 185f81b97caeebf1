"""Overlapped steps (engine.py, LLMSERVE_OVERLAP_STEPS) answer exactly as plain steps: step N+1
is launched on step N's picks before the host reads step N back, and a row that finished at
step N drops its extra token unread. Checked on the CPU, where the same code runs without the
overlap in time: greedy and seeded tokens across joins and leaves, rows that need the host per
token (logprobs, penalties) mixed in, min_tokens, stop strings, cancellation, and that the
launched path really ran."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from llmserve.engine import ContinuousBatchingEngine
from llmserve.engine_api import Delta, SamplingParams
from llmserve.models import LoadedModel
from llmserve.settings import SettingsError, load_settings

from tests.server.test_batching import MAX_TOKENS, PROMPTS, mixed_params, tokens_and_logprobs
from tests.server.test_paged_engine import together

Factory = Callable[..., ContinuousBatchingEngine]


@pytest.fixture
def build(tiny: LoadedModel) -> Iterator[Factory]:
    engines: list[ContinuousBatchingEngine] = []

    def make(model: LoadedModel | None = None, **kwargs: Any) -> ContinuousBatchingEngine:
        loaded = model or tiny
        engine = ContinuousBatchingEngine(
            loaded.model,
            loaded.tokenizer,
            max_model_len=kwargs.pop("max_model_len", 256),
            eos_token_ids=kwargs.pop("eos", [2]),
            max_batch=kwargs.pop("max_batch", 4),
            **kwargs,
        )
        engines.append(engine)
        engine.start()
        return engine

    yield make
    for engine in engines:
        engine.stop()


def count_launches(engine: ContinuousBatchingEngine) -> list[int]:
    launches = [0]
    original = engine.runner.launch_decode

    def counted(*args: Any, **kwargs: Any) -> Any:
        launches[0] += 1
        return original(*args, **kwargs)

    engine.runner.launch_decode = counted  # type: ignore[method-assign]
    return launches


def assert_same(got: list[list[Delta]], want: list[list[Delta]]) -> None:
    for g, w in zip(got, want, strict=True):
        got_tokens, got_lp = tokens_and_logprobs(g)
        want_tokens, want_lp = tokens_and_logprobs(w)
        assert got_tokens == want_tokens
        assert got_lp == pytest.approx(want_lp, abs=1e-4)
        assert "".join(d.text for d in g) == "".join(d.text for d in w)
        assert g[-1].finish_reason == w[-1].finish_reason


def assert_idle(engine: ContinuousBatchingEngine) -> None:
    """Nothing in flight, no launched step left and no row in the cache, once the engine
    thread has finished the step whose deltas the client already has (a short wait)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if engine.in_flight() == 0 and engine._pending is None and engine.runner.batch.rows == 0:
            return
        time.sleep(0.01)
    assert engine.in_flight() == 0
    assert engine._pending is None
    assert engine.runner.batch.rows == 0  # every finished row left the cache


@pytest.mark.parametrize("graph_max_batch", [0, 4], ids=["eager", "fixed-buffers"])
@pytest.mark.parametrize("preset", ["tiny", "tiny-llama"])
def test_overlapped_greedy_equals_plain_across_joins_and_leaves(
    build: Factory, tiny: LoadedModel, tiny_llama: LoadedModel, preset: str, graph_max_batch: int
) -> None:
    model = tiny if preset == "tiny" else tiny_llama
    params = mixed_params(False)
    plain = together(build(model, graph_max_batch=graph_max_batch), PROMPTS, params)
    engine = build(model, graph_max_batch=graph_max_batch, overlap_steps=True)
    launches = count_launches(engine)
    overlapped = together(engine, PROMPTS, params)
    assert_same(overlapped, plain)
    assert [len(tokens_and_logprobs(d)[0]) for d in overlapped] == MAX_TOKENS
    assert launches[0] >= max(MAX_TOKENS) - 1  # the decode steps went the launched way
    assert_idle(engine)


def test_rows_needing_the_host_fall_back_and_mix_with_overlapped_ones(build: Factory) -> None:
    """Logprobs and penalty rows (mixed_params' extras) make their steps plain; once they have
    left, the others overlap again; tokens and logprobs match plain steps throughout."""
    params = mixed_params(True)
    plain = together(build(graph_max_batch=4), PROMPTS, params)
    engine = build(graph_max_batch=4, overlap_steps=True)
    launches = count_launches(engine)
    overlapped = together(engine, PROMPTS, params)
    assert_same(overlapped, plain)
    assert launches[0] > 0
    assert_idle(engine)


def test_min_tokens_counts_the_unread_token(build: Factory) -> None:
    """EOS and stop ids stay masked exactly until min_tokens, though the launched step's
    token is not in output_ids yet when the next step is picked."""
    eos_heavy = [
        SamplingParams(
            max_tokens=20,
            temperature=0.0,
            min_tokens=n,
            stop_token_ids=(13, 29, 50, 77, 101),
            logit_bias=((13, 100.0),),  # the stop id wins every step once allowed
        )
        for n in (1, 2, 3, 5, 8, 11, 14)
    ]
    plain = together(build(graph_max_batch=4), PROMPTS, eos_heavy)
    engine = build(graph_max_batch=4, overlap_steps=True)
    launches = count_launches(engine)
    overlapped = together(engine, PROMPTS, eos_heavy)
    assert_same(overlapped, plain)
    lengths = [len(tokens_and_logprobs(d)[0]) for d in plain]
    # each stopped on the biased stop id as soon as min_tokens allowed it (the id is the last)
    assert lengths == [2, 3, 4, 6, 9, 12, 15], lengths
    assert all(d[-1].finish_reason == "stop" for d in overlapped)
    assert launches[0] > 0
    assert_idle(engine)


def test_seeded_sampling_and_stop_strings_match(build: Factory) -> None:
    sampled = [
        SamplingParams(max_tokens=24, temperature=0.9, top_p=0.9, seed=s, ignore_eos=True)
        for s in range(len(PROMPTS))
    ]
    reference = together(build(graph_max_batch=4), PROMPTS, sampled)
    # a stop string taken from the middle of one answer: that row stops early, others not
    text = "".join(d.text for d in reference[2])
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert stop.strip(), text
    stopped = [
        SamplingParams(
            max_tokens=24, temperature=0.9, top_p=0.9, seed=s, ignore_eos=True, stop=(stop,)
        )
        for s in range(len(PROMPTS))
    ]
    plain = together(build(graph_max_batch=4), PROMPTS, stopped)
    engine = build(graph_max_batch=4, overlap_steps=True)
    overlapped = together(engine, PROMPTS, stopped)
    assert_same(overlapped, plain)
    assert plain[2][-1].finish_reason == "stop"
    assert_idle(engine)


def test_cancelled_request_leaves_and_the_rest_match(build: Factory) -> None:
    params = [SamplingParams(max_tokens=40, temperature=0.0, ignore_eos=True)] * 3
    prompts = PROMPTS[:3]

    async def scenario(engine: ContinuousBatchingEngine) -> list[list[Delta]]:
        async def full(prompt: list[int]) -> list[Delta]:
            return [d async for d in engine.submit(prompt, params[0])]

        async def cut(prompt: list[int]) -> list[Delta]:
            stream = engine.submit(prompt, params[0])
            got: list[Delta] = []
            async for delta in stream:
                got.append(delta)
                if len(got) == 5:
                    stream.cancel()
            return got

        return list(await asyncio.gather(full(prompts[0]), cut(prompts[1]), full(prompts[2])))

    plain_engine = build(graph_max_batch=4)
    plain = asyncio.run(scenario(plain_engine))
    uncut = tokens_and_logprobs(together(plain_engine, [prompts[1]], params[:1])[0])[0]
    engine = build(graph_max_batch=4, overlap_steps=True)
    overlapped = asyncio.run(scenario(engine))
    for i in (0, 2):
        assert tokens_and_logprobs(overlapped[i])[0] == tokens_and_logprobs(plain[i])[0]
        assert len(tokens_and_logprobs(overlapped[i])[0]) == 40
    assert overlapped[1][-1].finish_reason == "cancelled"
    # how many tokens arrive before the cancel lands depends on timing; they are the uncut
    # answer's first ones
    cut_tokens = tokens_and_logprobs(overlapped[1])[0]
    assert 5 <= len(cut_tokens) < 40
    assert cut_tokens == uncut[: len(cut_tokens)]
    assert_idle(engine)


def test_overlap_setting_values() -> None:
    assert load_settings(None, {"LLMSERVE_OVERLAP_STEPS": "off"}).overlap_steps == "off"
    with pytest.raises(SettingsError, match=r"LLMSERVE_OVERLAP_STEPS.*auto, on, off"):
        load_settings(None, {"LLMSERVE_OVERLAP_STEPS": "sometimes"})


def test_paged_runner_keeps_plain_steps(build: Factory) -> None:
    engine = build(kv_cache="paged", kv_block_size=4, overlap_steps=True)
    assert engine._overlap is False
    deltas = together(engine, PROMPTS[:2], mixed_params(False)[:2])
    assert [len(tokens_and_logprobs(d)[0]) for d in deltas] == MAX_TOKENS[:2]


def test_prompts_joining_after_overlapped_steps_with_one_done_at_once(build: Factory) -> None:
    """Two prompts join in one prefill while rows decode overlapped (and again once the batch
    has emptied), one of them done on its first token: the retired row must not index the
    previous launch's picks (they no longer match the batch's rows)."""

    async def scenario(engine: ContinuousBatchingEngine) -> list[list[int]]:
        long = SamplingParams(max_tokens=60, temperature=0.0, ignore_eos=True)
        got: dict[str, list[Delta]] = {"a": [], "b": []}

        async def read(name: str, stream: Any) -> None:
            async for delta in stream:
                got[name].append(delta)

        running = [
            asyncio.create_task(read("a", engine.submit(PROMPTS[0], long))),
            asyncio.create_task(read("b", engine.submit(PROMPTS[1], long))),
        ]
        while len(got["a"]) < 5:
            await asyncio.sleep(0.001)
        for round_ in ("mid", "idle"):
            if round_ == "idle":
                await asyncio.gather(*running)
                running = []
            with engine._wake:  # both join in the same step
                short = SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True)
                one = SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True)
                got[f"c-{round_}"], got[f"d-{round_}"] = [], []
                running += [
                    asyncio.create_task(read(f"c-{round_}", engine.submit(PROMPTS[2], short))),
                    asyncio.create_task(read(f"d-{round_}", engine.submit(PROMPTS[3], one))),
                ]
        await asyncio.gather(*running)
        assert all(g[-1].finish_reason == "length" for g in got.values()), got
        return [tokens_and_logprobs(got[k])[0] for k in sorted(got)]

    plain = asyncio.run(scenario(build(graph_max_batch=4)))
    engine = build(graph_max_batch=4, overlap_steps=True)
    launches = count_launches(engine)
    assert asyncio.run(scenario(engine)) == plain
    assert launches[0] > 0
    assert_idle(engine)


def test_chunked_prefill_joins_overlapped_rows(build: Factory) -> None:
    long_prompt = [1, *range(300, 420)]  # 121 tokens, in 40-token chunks
    prompts = [PROMPTS[0], long_prompt, PROMPTS[2], long_prompt[:70]]
    params = [
        SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True) for n in (30, 8, 20, 12)
    ]
    plain = together(build(graph_max_batch=4, max_step_tokens=40), prompts, params)
    engine = build(graph_max_batch=4, max_step_tokens=40, overlap_steps=True)
    launches = count_launches(engine)
    assert_same(together(engine, prompts, params), plain)
    assert launches[0] > 0
    assert_idle(engine)


def test_context_limit_under_overlap(build: Factory) -> None:
    """Rows that reach the context length finish with `length` exactly as with plain steps
    (their extra launched step still fits the context)."""
    params = [SamplingParams(max_tokens=500, temperature=0.0, ignore_eos=True)] * 3
    prompts = [PROMPTS[0], PROMPTS[2], PROMPTS[5]]
    plain = together(build(graph_max_batch=4, max_model_len=40), prompts, params)
    engine = build(graph_max_batch=4, max_model_len=40, overlap_steps=True)
    overlapped = together(engine, prompts, params)
    assert_same(overlapped, plain)
    assert [
        len(p) + len(tokens_and_logprobs(d)[0]) for p, d in zip(prompts, overlapped, strict=True)
    ] == [40] * 3
    assert_idle(engine)


def test_a_failing_read_back_fails_the_batch_and_the_joining_request(build: Factory) -> None:
    """An error while the launched step is read back before a step that admits (where a CUDA
    fault would surface) ends the running and the admitted request with an error; the engine
    lives on and serves the next request."""
    engine = build(graph_max_batch=4, overlap_steps=True)
    long = SamplingParams(max_tokens=100, temperature=0.0, ignore_eos=True)

    async def scenario() -> list[list[Delta]]:
        got: list[list[Delta]] = [[], []]

        async def read(i: int, stream: Any) -> None:
            async for delta in stream:
                got[i].append(delta)

        first = asyncio.create_task(read(0, engine.submit(PROMPTS[0], long)))
        while len(got[0]) < 3:
            await asyncio.sleep(0.001)
        original = engine.output.accept
        joining: list[str] = []

        def broken(*args: Any) -> None:
            # only in the read-back before the step that admits the second request: it has
            # left the queue and is not in the batch yet
            scheduler = engine.scheduler
            known = {s.request_id for s in [*scheduler.waiting, *scheduler.running]}
            if joining[0] in known:
                return original(*args)
            engine.output.accept = original  # type: ignore[method-assign]
            raise RuntimeError("read-back failed")

        with engine._wake:
            stream = engine.submit(PROMPTS[1], long)
            joining.append(stream.request_id)
            engine.output.accept = broken  # type: ignore[method-assign]
            second = asyncio.create_task(read(1, stream))
        await asyncio.wait_for(asyncio.gather(first, second), timeout=30)
        return got

    got = asyncio.run(scenario())
    assert [g[-1].finish_reason for g in got] == ["error", "error"]
    assert "read-back failed" in (got[1][-1].error or "")
    assert engine.alive()
    again = together(engine, [PROMPTS[2]], [SamplingParams(max_tokens=4, temperature=0.0)])
    assert len(tokens_and_logprobs(again[0])[0]) == 4
    assert_idle(engine)

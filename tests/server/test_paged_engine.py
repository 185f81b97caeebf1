"""The engine over the paged KV cache (kv_cache="paged") answers exactly as over the padded one:
greedy tokens and logprobs of requests joining and leaving the batch (with penalties, bias and
stop ids), on both tiny architectures; chunked prefill and prompt logprobs; structured outputs
and seeded sampling. Prefix-cache hits change nothing but the work done (and the hit counter),
and preemption under a pool too small for the batch loses no request and no token. Every test
also checks that every block went back to the pool."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from llmserve.engine import ContinuousBatchingEngine
from llmserve.engine_api import Delta, SamplingParams, StructuredOutput
from llmserve.models import LoadedModel

from tests.server.test_batching import MAX_TOKENS, PROMPTS, mixed_params, tokens_and_logprobs

Factory = Callable[..., ContinuousBatchingEngine]


@pytest.fixture
def build(tiny: LoadedModel) -> Iterator[Factory]:
    """Engines on a tiny model (`model=`, default random:tiny) with any settings; every one is
    stopped after the test, after checking that it holds no block any more."""
    engines: list[ContinuousBatchingEngine] = []

    def make(
        model: LoadedModel | None = None, *, max_model_len: int = 256, **kwargs: Any
    ) -> ContinuousBatchingEngine:
        loaded = model or tiny
        engine = ContinuousBatchingEngine(
            loaded.model,
            loaded.tokenizer,
            max_model_len=max_model_len,
            eos_token_ids=kwargs.pop("eos", []),
            **kwargs,
        )
        engines.append(engine)
        engine.start()
        return engine

    yield make
    for engine in engines:
        if engine.blocks is not None:
            assert engine.blocks.used_blocks == 0, "blocks leaked"
        engine.stop()


async def answer(
    engine: ContinuousBatchingEngine, prompt: list[int], params: SamplingParams, delay: float = 0.0
) -> list[Delta]:
    await asyncio.sleep(delay)
    return [d async for d in engine.submit(prompt, params)]


def together(
    engine: ContinuousBatchingEngine, prompts: list[list[int]], params: list[SamplingParams]
) -> list[list[Delta]]:
    """All at once, a few ms apart: some join a running batch, some wait for a slot."""

    async def scenario() -> list[list[Delta]]:
        return list(
            await asyncio.gather(
                *(
                    answer(engine, p, q, delay=0.005 * i)
                    for i, (p, q) in enumerate(zip(prompts, params, strict=True))
                )
            )
        )

    return asyncio.run(scenario())


def greedy(tokens: int, **kwargs: Any) -> SamplingParams:
    return SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True, **kwargs)


@pytest.mark.parametrize("with_extras", [False, True], ids=["plain", "logprobs-penalties"])
@pytest.mark.parametrize("preset", ["tiny", "tiny-llama"])
def test_paged_greedy_equals_padded_across_joins_and_leaves(
    build: Factory, tiny: LoadedModel, tiny_llama: LoadedModel, preset: str, with_extras: bool
) -> None:
    model = tiny if preset == "tiny" else tiny_llama
    params = mixed_params(with_extras)
    padded = together(build(model, eos=[2], max_batch=4), PROMPTS, params)
    # 4-token blocks: every request crosses several block boundaries while decoding
    paged_engine = build(model, eos=[2], max_batch=4, kv_cache="paged", kv_block_size=4)
    paged = together(paged_engine, PROMPTS, params)
    want = [tokens_and_logprobs(d) for d in padded]
    got = [tokens_and_logprobs(d) for d in paged]
    assert [t for t, _ in got] == [t for t, _ in want]
    assert [len(t) for t, _ in got] == MAX_TOKENS or with_extras  # stop ids may end one early
    for (_, got_lp), (_, want_lp) in zip(got, want, strict=True):
        assert got_lp == pytest.approx(want_lp, abs=1e-4)
    if with_extras:
        assert sum(len(lp) for _, lp in got) > 0
    assert paged_engine.stats().cache_capacity_tokens == 4 * 256  # CPU: max batch x context


LONG = [1, *range(300, 420)]  # 121 tokens


def test_paged_chunked_prefill_and_prompt_logprobs_equal_padded(build: Factory) -> None:
    prompts = [[1, 22, 7], LONG, [1, *range(2000, 2050)], LONG[:70], [1, 5]]
    params = [greedy(30), greedy(8), greedy(12, prompt_logprobs=2), greedy(10), greedy(6)]
    padded = together(build(max_batch=4, max_step_tokens=40), prompts, params)
    paged_engine = build(max_batch=4, max_step_tokens=40, kv_cache="paged", kv_block_size=8)
    chunks: list[int] = []
    original = paged_engine.runner.prefill_chunk

    def counting(seq: Any, tokens: int) -> Any:
        chunks.append(tokens)
        return original(seq, tokens)

    paged_engine.runner.prefill_chunk = counting  # type: ignore[method-assign]
    paged = together(paged_engine, prompts, params)
    assert [tokens_and_logprobs(d)[0] for d in paged] == [tokens_and_logprobs(d)[0] for d in padded]
    assert len(chunks) >= len(LONG) // 40 and max(chunks) <= 40  # it really was chunked
    want, got = padded[2][0].prompt_logprobs, paged[2][0].prompt_logprobs
    assert want is not None and got is not None and len(got) == len(prompts[2])
    assert [lp.logprob for lp in got[1:] if lp] == pytest.approx(
        [lp.logprob for lp in want[1:] if lp], abs=1e-4
    )


def test_structured_outputs_and_seeded_sampling_equal_padded(build: Factory) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["name", "n"],
    }
    prompt = [1, 504, 3458, 314, 260, 1345]
    params = [
        SamplingParams(max_tokens=60, temperature=0.0, structured=StructuredOutput("json_object")),
        SamplingParams(
            max_tokens=60,
            temperature=0.8,
            seed=11,
            structured=StructuredOutput("json_schema", json.dumps(schema)),
        ),
        SamplingParams(max_tokens=25, temperature=1.0, top_p=0.9, seed=5, ignore_eos=True),
    ]
    prompts = [prompt] * 3
    padded = together(build(eos=[2], max_batch=4), prompts, params)
    paged = together(
        build(eos=[2], max_batch=4, kv_cache="paged", kv_block_size=4), prompts, params
    )
    texts = ["".join(d.text for d in deltas) for deltas in paged]
    assert texts == ["".join(d.text for d in deltas) for deltas in padded]
    assert isinstance(json.loads(texts[0]), dict)
    assert set(json.loads(texts[1])) >= {"name", "n"}


SYSTEM = [1, *range(700, 739)]  # 40 tokens: 5 blocks of 8


def test_prefix_cache_hits_give_identical_outputs_and_count(build: Factory) -> None:
    prompts = [[*SYSTEM, 5000 + i, 17, 3 * i + 40] for i in range(4)] + [[*SYSTEM[:20], 9]]
    params = [greedy(12 + i) for i in range(len(prompts))]
    uncached = build(max_batch=4, kv_cache="paged", kv_block_size=8, prefix_caching=False)
    want = [tokens_and_logprobs(d)[0] for d in together(uncached, prompts, params)]
    assert uncached.stats().prefix_cache_hits == 0

    cached = build(max_batch=4, kv_cache="paged", kv_block_size=8)
    computed: list[int] = []  # query tokens of every prefill forward
    original = cached.runner._forward  # type: ignore[attr-defined]

    def counting(seqs: Any, new_tokens: list[list[int]], **kwargs: Any) -> Any:
        if kwargs.get("starts") is None:
            computed.extend(len(t) for t in new_tokens)
        return original(seqs, new_tokens, **kwargs)

    cached.runner._forward = counting  # type: ignore[attr-defined]

    async def first_then_rest() -> list[list[Delta]]:
        first = await answer(cached, prompts[0], params[0])  # registers the system prompt
        rest = await asyncio.gather(
            *(
                answer(cached, p, q, 0.005 * i)
                for i, (p, q) in enumerate(zip(prompts, params, strict=True))
            )
        )
        return [first, *rest]

    runs = asyncio.run(first_then_rest())
    got = [tokens_and_logprobs(d)[0] for d in runs]
    assert got[1:] == want and got[0] == want[0]
    stats = cached.stats()
    # Every prompt is 43 tokens but the short one (21): its first 2 blocks are cached too.
    assert stats.prefix_cache_queries == 5 * 43 + 21
    assert stats.prefix_cache_hits == 4 * 40 + 16  # the first request found nothing cached
    assert computed[0] == 43 and sorted(computed[1:]) == [3, 3, 3, 3, 5]


def test_a_follow_up_that_repeats_an_answer_reuses_its_generated_blocks(build: Factory) -> None:
    prompt = [1, *range(3000, 3009)]  # 10 tokens
    cached = build(kv_cache="paged", kv_block_size=4)
    uncached = build(kv_cache="paged", kv_block_size=4, prefix_caching=False)

    async def chat(engine: ContinuousBatchingEngine) -> tuple[list[int], list[int]]:
        first = tokens_and_logprobs(await answer(engine, prompt, greedy(20)))[0]
        follow_up = [*prompt, *first, 5]  # 31 tokens: the answer is part of the next prompt
        return first, tokens_and_logprobs(await answer(engine, follow_up, greedy(8)))[0]

    assert asyncio.run(chat(cached)) == asyncio.run(chat(uncached))
    # the first request wrote 10 + 19 tokens (its last one never went in): 7 full blocks
    assert cached.stats().prefix_cache_hits == 7 * 4


def test_preemption_under_a_tiny_pool_loses_no_request(build: Factory) -> None:
    prompts = [[1, *range(100 + 10 * i, 108 + 10 * i)] for i in range(5)]  # 9 tokens each
    params = [greedy(40 - 3 * i) for i in range(5)]
    roomy = build(max_model_len=64, max_batch=5, kv_cache="paged", kv_block_size=4)
    want = together(roomy, prompts, params)
    assert roomy.scheduler.preemptions == 0
    # 17 blocks of 4 (68 tokens): room for one request of the whole context, not for five
    tiny_pool = build(
        max_model_len=64, max_batch=5, kv_cache="paged", kv_block_size=4, kv_cache_tokens=68
    )
    got = together(tiny_pool, prompts, params)
    assert tiny_pool.scheduler.preemptions >= 3
    assert tiny_pool.stats().preemptions == tiny_pool.scheduler.preemptions
    for deltas, expected, p in zip(got, want, params, strict=True):
        tokens = [t for d in deltas for t in d.token_ids]
        assert tokens == [t for d in expected for t in d.token_ids]
        assert "".join(d.text for d in deltas) == "".join(d.text for d in expected)
        # every delta's count is the tokens sent so far: no gap, no repeat
        sent = list(itertools.accumulate(len(d.token_ids) for d in deltas))
        assert [d.completion_tokens for d in deltas] == sent and sent[-1] == p.max_tokens
        assert deltas[-1].finish_reason == "length"
    assert tiny_pool.stats().cache_capacity_tokens == 68


def test_sampling_logprobs_penalties_and_grammars_carry_on_across_preemption(
    build: Factory,
) -> None:
    """The generator, the grammar and the penalties' token counts stay with the request: after
    its recompute it goes on as if it had never stopped."""
    prompts = [[1, *range(200 + 10 * i, 208 + 10 * i)] for i in range(5)]
    params = [
        SamplingParams(max_tokens=40, temperature=0.9, top_p=0.95, seed=3, ignore_eos=True),
        greedy(37, logprobs=3, repetition_penalty=1.3),
        SamplingParams(max_tokens=45, temperature=0.0, structured=StructuredOutput("json_object")),
        greedy(31, presence_penalty=0.8, frequency_penalty=0.4, logprobs=0),
        SamplingParams(max_tokens=28, temperature=1.0, seed=9, ignore_eos=True, logprobs=1),
    ]
    settings: dict[str, Any] = dict(
        eos=[2], max_model_len=64, max_batch=5, kv_cache="paged", kv_block_size=4
    )
    want = together(build(**settings), prompts, params)
    tiny_pool = build(**settings, kv_cache_tokens=68)
    got = together(tiny_pool, prompts, params)
    assert tiny_pool.scheduler.preemptions >= 2
    for deltas, expected in zip(got, want, strict=True):
        assert tokens_and_logprobs(deltas)[0] == tokens_and_logprobs(expected)[0]
        assert tokens_and_logprobs(deltas)[1] == pytest.approx(
            tokens_and_logprobs(expected)[1], abs=1e-4
        )
        assert "".join(d.text for d in deltas) == "".join(d.text for d in expected)
        assert deltas[-1].finish_reason == expected[-1].finish_reason
    assert isinstance(json.loads("".join(d.text for d in got[2])), dict)


def test_cancelled_and_finished_requests_give_their_blocks_back(build: Factory) -> None:
    engine = build(max_batch=2, max_queue=4, kv_cache="paged", kv_block_size=4)

    async def scenario() -> tuple[list[Delta], list[Delta]]:
        busy = engine.submit([1, 22, 7], greedy(200))
        await busy.next_delta()
        used = engine.stats().cache_tokens
        busy.cancel()
        rest = [d async for d in busy]
        after = await answer(engine, [1, 5], greedy(4))
        assert used > 0
        return rest, after

    cancelled, after = asyncio.run(scenario())
    assert cancelled[-1].finish_reason == "cancelled" and len(after) == 4
    assert engine.stats().cache_tokens == 0 and engine.blocks is not None
    assert engine.blocks.used_blocks == 0


def test_a_pool_smaller_than_one_request_is_refused(tiny: LoadedModel) -> None:
    with pytest.raises(ValueError, match=r"LLMSERVE_KV_CACHE_TOKENS=100.*at least 17 blocks"):
        ContinuousBatchingEngine(
            tiny.model,
            tiny.tokenizer,
            max_model_len=256,
            eos_token_ids=[],
            kv_cache="paged",
            kv_cache_tokens=100,
        )
    with pytest.raises(
        ValueError, match=r"LLMSERVE_KV_CACHE='pages'.*allowed: auto, padded, paged"
    ):
        ContinuousBatchingEngine(
            tiny.model, tiny.tokenizer, max_model_len=256, eos_token_ids=[], kv_cache="pages"
        )


def test_metrics_count_prefix_cache_tokens_and_preemptions_with_the_model_name() -> None:
    from llmserve.engine_api import EngineStats
    from llmserve.metrics import ServerMetrics
    from prometheus_client.parser import text_string_to_metric_families

    stats = [EngineStats(1, 2, 48, 64, prefix_cache_queries=40, prefix_cache_hits=16)]
    metrics = ServerMetrics(lambda: stats[-1], lambda: "tiny")

    def samples() -> dict[str, float]:
        return {
            s.name: s.value
            for family in text_string_to_metric_families(metrics.render().decode())
            for s in family.samples
            if s.labels.get("model_name") == "tiny"
        }

    first = samples()
    assert first["vllm:kv_cache_usage_perc"] == 0.75
    assert first["vllm:prefix_cache_queries_total"] == 40
    assert first["vllm:prefix_cache_hits_total"] == 16
    assert first["vllm:num_preemptions_total"] == 0
    stats.append(EngineStats(0, 0, 0, 64, 100, 50, preemptions=3))
    later = samples()
    assert later["vllm:prefix_cache_queries_total"] == 100
    assert later["vllm:prefix_cache_hits_total"] == 50
    assert later["vllm:num_preemptions_total"] == 3
    assert samples()["vllm:prefix_cache_hits_total"] == 50  # a scrape alone counts nothing

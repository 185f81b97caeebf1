"""The padded cache's prefix caching (prompt_reuse.py): a prompt that starts with the last
finished request's tokens reuses their keys and values. Greedy tokens stay those of a full
prefill, on both tiny architectures and on the eager, fixed-buffer and overlapped paths. The
counters say how much was reused; prompt logprobs, short shared prefixes and the paged cache
reuse nothing this way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch
from llmserve.engine import ContinuousBatchingEngine
from llmserve.engine_api import SamplingParams
from llmserve.models import LoadedModel
from llmserve.prompt_reuse import MIN_REUSED_TOKENS, LastPromptCache, common_prefix
from llmserve.settings import SettingsError, load_settings

from tests.server.conftest import EngineFactory

PROMPT = [1, *range(100, 140)]  # 41 tokens
OTHER = [1, *range(900, 930)]


def greedy(tokens: int = 10, **kwargs: Any) -> SamplingParams:
    return SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True, **kwargs)


async def ids(engine: ContinuousBatchingEngine, prompt: list[int], p: SamplingParams) -> list[int]:
    return [t for d in [d async for d in engine.submit(prompt, p)] for t in d.token_ids]


async def conversation(engine: ContinuousBatchingEngine) -> list[list[int]]:
    """The same prompt twice, then a next turn: the prompt, the answer and a new message."""
    first = await ids(engine, PROMPT, greedy())
    again = await ids(engine, PROMPT, greedy())
    turn = await ids(engine, PROMPT + first + [5, 6, 7], greedy())
    return [first, again, turn]


@pytest.fixture
def build(engine_factory: EngineFactory) -> Any:
    """engine_factory on a model given first."""
    return lambda loaded, **kwargs: engine_factory(loaded=loaded, **kwargs)


@pytest.mark.parametrize("model", ["tiny", "tiny_llama"])
@pytest.mark.parametrize(
    "path",
    [dict(graph_max_batch=0), dict(graph_max_batch=4), dict(overlap_steps=True)],
    ids=["eager", "fixed-buffers", "overlapped"],
)
def test_reused_prefix_gives_a_full_prefills_tokens(
    build: Any, request: pytest.FixtureRequest, model: str, path: dict[str, Any]
) -> None:
    loaded = request.getfixturevalue(model)
    plain = build(loaded, reuse_last_prompt=False, **path)
    expected = asyncio.run(conversation(plain))
    assert plain.stats().prefix_cache_hits == 0
    reusing = build(loaded, reuse_last_prompt=True, **path)
    assert reusing.stats().prefix_cache_queries == 0  # the warm-up is not counted
    calls: list[tuple[int, int]] = []
    original = reusing.runner.prefill_chunk

    def chunk(seq: Any, tokens: int) -> Any:
        calls.append((seq.prefilled, tokens))
        return original(seq, tokens)

    reusing.runner.prefill_chunk = chunk  # type: ignore[method-assign]
    assert asyncio.run(conversation(reusing)) == expected
    stats = reusing.stats()
    assert stats.prefix_cache_queries == 3 * len(PROMPT) + 10 + 3
    # the repeat reuses all but its last token; the next turn the prompt and the answer's fed
    # tokens (the last answer token was never fed, unless an overlapped step fed it)
    turn_hits = stats.prefix_cache_hits - (len(PROMPT) - 1)
    assert turn_hits in (len(PROMPT) + 9, len(PROMPT) + 10)
    assert calls == [(len(PROMPT) - 1, 1), (turn_hits, len(PROMPT) + 13 - turn_hits)]


def test_rows_of_a_batch_reuse_the_last_to_finish(build: Any, tiny_llama: LoadedModel) -> None:
    async def workload(engine: ContinuousBatchingEngine) -> list[list[int]]:
        short, long = await asyncio.gather(
            ids(engine, OTHER, greedy(4)), ids(engine, PROMPT, greedy(12))
        )
        follow = await ids(engine, PROMPT + long + [9], greedy(6))
        stale = await ids(engine, OTHER + short + [9], greedy(6))  # its row was not kept
        return [short, long, follow, stale]

    expected = asyncio.run(workload(build(tiny_llama, max_batch=4)))
    engine = build(tiny_llama, max_batch=4, reuse_last_prompt=True)
    assert asyncio.run(workload(engine)) == expected
    # the follow-up reused the longer request (it finished last); the stale one reused
    # nothing, since the follow-up's row had replaced it by then
    assert engine.stats().prefix_cache_hits == len(PROMPT) + 11


def test_a_row_that_had_padding_is_kept_without_it(build: Any, tiny_llama: LoadedModel) -> None:
    """A short prompt finishes while a longer one still runs: its row is left-padded to the
    longer one's length, and its next turn reuses only its own columns."""
    long_prompt = [1, *range(300, 380)]

    async def workload(engine: ContinuousBatchingEngine) -> list[list[int]]:
        async def turn_after_short() -> list[list[int]]:
            short = await ids(engine, PROMPT[:31], greedy(4))
            return [short, await ids(engine, PROMPT[:31] + short + [9, 10], greedy(8))]

        long, turns = await asyncio.gather(
            ids(engine, long_prompt, greedy(150)), turn_after_short()
        )
        return [long, *turns]

    for path in (dict(graph_max_batch=0), dict(graph_max_batch=4), dict(overlap_steps=True)):
        expected = asyncio.run(workload(build(tiny_llama, max_batch=4, **path)))
        engine = build(tiny_llama, max_batch=4, reuse_last_prompt=True, **path)
        assert asyncio.run(workload(engine)) == expected, path
        assert engine.stats().prefix_cache_hits in (31 + 3, 31 + 4), path


def test_prompts_behind_a_reusing_one_still_join_together(
    build: Any, tiny_llama: LoadedModel
) -> None:
    """A burst of prompts that share a system prompt with the last row: the first reuses it,
    the rest are prefilled together in the same step, as without prefix caching."""
    system = [1, *range(500, 525)]
    tails = [[600 + i, 700 + i] for i in range(6)]

    async def workload(engine: ContinuousBatchingEngine) -> list[list[int]]:
        await ids(engine, [*system, 5], greedy(2))
        return list(await asyncio.gather(*(ids(engine, system + t, greedy(5)) for t in tails)))

    expected = asyncio.run(workload(build(tiny_llama, max_batch=8)))
    engine = build(tiny_llama, max_batch=8, reuse_last_prompt=True)
    batches: list[int] = []
    original = engine.runner.prefill

    def prefill(seqs: Any) -> Any:
        batches.append(len(seqs))
        return original(seqs)

    engine.runner.prefill = prefill  # type: ignore[method-assign]
    assert asyncio.run(workload(engine)) == expected
    assert batches == [1, 5]  # the first request alone, then the burst less the reusing one
    assert engine.stats().prefix_cache_hits == len(system)


def test_a_failed_copy_fails_the_step_not_the_engine(
    build: Any, tiny_llama: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = build(tiny_llama, reuse_last_prompt=True)
    expected = asyncio.run(ids(engine, PROMPT, greedy()))
    cache = engine.prompt_cache
    assert cache is not None

    def no_memory(tokens: int) -> Any:
        raise torch.OutOfMemoryError("simulated: no memory for the prefix")

    monkeypatch.setattr(cache, "seed", no_memory)

    async def failing() -> list[Any]:
        return [d async for d in engine.submit(PROMPT, greedy())]

    deltas = asyncio.run(failing())
    assert deltas[-1].finish_reason == "error" and "no memory" in (deltas[-1].error or "")
    monkeypatch.undo()
    assert engine.alive()
    assert asyncio.run(ids(engine, PROMPT, greedy())) == expected  # and it serves on


def test_a_row_replaced_after_scheduling_is_not_reused(build: Any, tiny_llama: LoadedModel) -> None:
    """Between the plan and its step another row may replace the kept one (a cancelled row
    leaves first): the prompt is then prefilled from its start."""
    plain = build(tiny_llama)
    expected = asyncio.run(conversation(plain))
    engine = build(tiny_llama, reuse_last_prompt=True)
    cache = engine.prompt_cache
    assert cache is not None
    original = engine.scheduler.schedule

    def schedule_then_replace() -> Any:
        plan = original()
        if plan.chunk is not None:
            cache.clear()
        return plan

    engine.scheduler.schedule = schedule_then_replace  # type: ignore[method-assign]
    assert asyncio.run(conversation(engine)) == expected
    assert engine.stats().prefix_cache_hits == 0


def test_prompt_logprobs_and_short_prefixes_reuse_nothing(
    build: Any, tiny_llama: LoadedModel
) -> None:
    engine = build(tiny_llama, reuse_last_prompt=True)

    async def run() -> list[Any]:
        await ids(engine, PROMPT, greedy())
        deltas = [d async for d in engine.submit(PROMPT, greedy(prompt_logprobs=0))]
        short = [*PROMPT[: MIN_REUSED_TOKENS - 1], 7, 8, 9, 10]
        await ids(engine, short, greedy())
        return deltas

    deltas = asyncio.run(run())
    assert deltas[0].prompt_logprobs is not None
    assert len(deltas[0].prompt_logprobs) == len(PROMPT)
    assert engine.stats().prefix_cache_hits == 0


def test_a_prompt_being_chunked_keeps_its_turn(build: Any, tiny_llama: LoadedModel) -> None:
    """A small step budget: a long prompt is chunked when a reusing one arrives; both answer
    as a full prefill would."""
    long_prompt = [1, *range(2000, 2150)]

    async def workload(engine: ContinuousBatchingEngine) -> list[list[int]]:
        first = await ids(engine, PROMPT, greedy())

        async def later() -> list[int]:
            await asyncio.sleep(0.01)
            return await ids(engine, PROMPT + first, greedy())

        chunked, reused = await asyncio.gather(ids(engine, long_prompt, greedy(6)), later())
        return [first, chunked, reused]

    expected = asyncio.run(workload(build(tiny_llama, max_step_tokens=40)))
    engine = build(tiny_llama, max_step_tokens=40, reuse_last_prompt=True)
    assert asyncio.run(workload(engine)) == expected


def test_the_paged_cache_keeps_its_own_prefix_caching(build: Any, tiny: LoadedModel) -> None:
    engine = build(tiny, kv_cache="paged", kv_block_size=8, reuse_last_prompt=True)
    assert engine.prompt_cache is None and engine.scheduler.reuse is None
    asyncio.run(conversation(engine))
    assert engine.stats().prefix_cache_hits == 40 + 48  # full blocks of 8 only


def test_the_cache_keeps_only_columns_that_have_a_token() -> None:
    cache = LastPromptCache(lambda: None)
    keys = torch.arange(2 * 5, dtype=torch.float32).reshape(1, 1, 5, 2)
    cache.remember([7] * 4, [(keys, keys + 1)])  # an overlapped step fed one more
    assert cache.tokens == [7] * 4 and cache.layers[0][0].shape[-2] == 4
    cache.remember(list(range(40)), [(keys, keys)])  # the last pick was never fed
    assert cache.tokens == [0, 1, 2, 3, 4]
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    with pytest.raises(ValueError, match="cannot reuse 6 tokens of 5 cached"):
        cache.seed(6)
    assert cache.seed_for([0, 1, 9, 9], 3) is None and cache.hits == 0


def test_a_whole_repeat_still_computes_its_last_token() -> None:
    cache = LastPromptCache(lambda: None)
    keys = torch.zeros(1, 1, 30, 2)
    cache.remember(list(range(30)), [(keys, keys)])
    assert cache.reusable(list(range(30)), greedy()) == 29
    assert cache.reusable([*range(30), 5], greedy()) == 30
    assert cache.reusable([*range(MIN_REUSED_TOKENS - 1), 99, 98], greedy()) == 0


def test_the_setting_names_its_values() -> None:
    assert load_settings(None, {"LLMSERVE_PREFIX_CACHING": "off"}).prefix_caching == "off"
    assert load_settings(None, {}).prefix_caching == "auto"
    with pytest.raises(SettingsError, match=r"LLMSERVE_PREFIX_CACHING.*auto, on, off"):
        load_settings(None, {"LLMSERVE_PREFIX_CACHING": "always"})

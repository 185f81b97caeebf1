"""Chunked prefill: a prompt longer than a step's token budget is prefilled a chunk per step
while the running requests keep decoding (one token each per step, instead of waiting for the
whole prefill), and the greedy tokens equal an unchunked prefill's for several chunk sizes, on
the eager and the fixed-buffer (CUDA graph) decode paths; prompt logprobs span the chunks;
cancelling a prompt mid-prefill frees its slot."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch
from llmserve.engine import ContinuousBatchingEngine
from llmserve.engine_api import Delta, SamplingParams
from llmserve.models import LoadedModel
from llmserve.scheduler import MIN_PREFILL_TOKENS

from tests.server.conftest import EngineFactory

LONG = [1, *range(300, 500)]  # 201 tokens: several chunks at every budget below
MEDIUM = [1, *range(2000, 2070)]
SHORT = [[1, 22, 7], [1, 504, 3458, 314, 260, 1345], [1, 5]]


def greedy(tokens: int, **kwargs: Any) -> SamplingParams:
    return SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True, **kwargs)


async def ids(
    engine: ContinuousBatchingEngine, prompt: list[int], p: SamplingParams, delay: float = 0.0
) -> list[int]:
    await asyncio.sleep(delay)
    return [t for d in [d async for d in engine.submit(prompt, p)] for t in d.token_ids]


async def workload(engine: ContinuousBatchingEngine) -> list[list[int]]:
    """Short requests running when long prompts arrive, more short ones arriving after."""
    return list(
        await asyncio.gather(
            ids(engine, SHORT[0], greedy(40)),
            ids(engine, SHORT[1], greedy(25)),
            ids(engine, LONG, greedy(12), delay=0.02),
            ids(engine, MEDIUM, greedy(20), delay=0.03),
            ids(engine, SHORT[2], greedy(15), delay=0.04),
            ids(engine, LONG[:150], greedy(9), delay=0.05),
        )
    )


@pytest.mark.parametrize(
    ("graph_max_batch", "kv_cache"),
    [(0, "padded"), (4, "padded"), (0, "paged")],
    ids=["eager", "fixed-buffers", "paged"],
)
def test_chunked_greedy_equals_unchunked(
    engine_factory: EngineFactory, graph_max_batch: int, kv_cache: str
) -> None:
    def build(budget: int) -> ContinuousBatchingEngine:
        return engine_factory(
            max_batch=8,
            max_step_tokens=budget,
            graph_max_batch=graph_max_batch,
            cuda_graphs=False,
            kv_cache=kv_cache,
            kv_block_size=8,
        )

    expected = asyncio.run(workload(build(4096)))  # every prompt in one forward
    for budget in (MIN_PREFILL_TOKENS, 50, 97):
        chunked = build(budget)
        calls: list[int] = []
        original = chunked.runner.prefill_chunk

        def counting(
            seq: Any, tokens: int, original: Any = original, calls: list[int] = calls
        ) -> Any:
            calls.append(tokens)
            return original(seq, tokens)

        chunked.runner.prefill_chunk = counting  # type: ignore[method-assign]
        assert asyncio.run(workload(chunked)) == expected, f"budget {budget}"
        assert max(calls) <= budget and len(calls) >= len(LONG) // budget


def test_running_requests_decode_while_a_long_prompt_is_chunked(
    engine_factory: EngineFactory,
) -> None:
    engine = engine_factory(max_batch=4, max_step_tokens=40)
    runner = engine.runner
    seen: list[int] = []  # the running request's token count at each chunk of the long one
    original = runner.prefill_chunk

    def recording(seq: Any, tokens: int) -> Any:
        running = [s for s in engine.scheduler.running if s.request_id != seq.request_id]
        if running:
            seen.append(running[0].generated)
        return original(seq, tokens)

    runner.prefill_chunk = recording  # type: ignore[method-assign]

    async def scenario() -> tuple[list[Delta], list[int]]:
        busy = engine.submit(SHORT[0], greedy(200))
        first = await busy.next_delta()  # running before the long prompt arrives
        long = await ids(engine, LONG, greedy(3))
        rest = [d async for d in busy]
        return [first, *rest], long

    busy, long = asyncio.run(scenario())
    chunks = -(-len(LONG) // 39)  # 40 a step, less one for the decoding row
    assert len(seen) == chunks and len(long) == 3
    # one token per step for the running request, every step of the prefill
    assert seen == list(range(seen[0], seen[0] + chunks))
    assert busy[-1].completion_tokens == 200


def test_prompt_logprobs_span_the_chunks(tiny: LoadedModel, engine_factory: EngineFactory) -> None:
    engine = engine_factory(max_step_tokens=MIN_PREFILL_TOKENS)
    prompt = MEDIUM

    async def scenario() -> list[Delta]:
        return [d async for d in engine.submit(prompt, greedy(2, prompt_logprobs=1))]

    first = asyncio.run(scenario())[0].prompt_logprobs
    with torch.no_grad():
        full = torch.log_softmax(tiny.model(torch.tensor([prompt])).logits[0].float(), -1)
    assert first is not None and len(first) == len(prompt) and first[0] is None
    got = [lp.logprob for lp in first[1:] if lp is not None]
    want = [float(full[i - 1, prompt[i]]) for i in range(1, len(prompt))]
    assert got == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("kv_cache", ["padded", "paged"])
def test_cancelling_a_prompt_mid_prefill_frees_its_slot(
    engine_factory: EngineFactory, kv_cache: str
) -> None:
    engine = engine_factory(
        max_batch=1, max_queue=4, max_step_tokens=MIN_PREFILL_TOKENS, kv_cache=kv_cache
    )
    original = engine.runner.prefill_chunk
    chunks: list[int] = []

    async def scenario() -> tuple[list[Delta], list[int]]:
        long = engine.submit(LONG, greedy(5))

        def cancel_after_two(seq: Any, tokens: int) -> Any:
            chunks.append(tokens)
            if len(chunks) == 2:
                long.cancel()
            return original(seq, tokens)

        engine.runner.prefill_chunk = cancel_after_two  # type: ignore[method-assign]
        cancelled = [d async for d in long]
        return cancelled, await ids(engine, SHORT[0], greedy(4))

    cancelled, after = asyncio.run(scenario())
    assert cancelled[-1].finish_reason == "cancelled" and cancelled[-1].completion_tokens == 0
    assert len(chunks) < len(LONG) // MIN_PREFILL_TOKENS and len(after) == 4
    assert engine.in_flight() == 0 and engine.scheduler.prefilling is None
    assert engine.stats().cache_tokens == 0  # paged: its blocks are back

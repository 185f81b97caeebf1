"""The scheduler on its own, without a model: the queue's bound counts the batch's free slots,
admission stops at the batch's slots and at the step's token budget (padded prompt tokens plus
one per decoding row), a prompt over the budget is prefilled in chunks, and cancellation finds a
request in the queue, the batch or its chunked prefill."""

from __future__ import annotations

from typing import cast

import pytest
from llmserve.detokenize import IncrementalDetokenizer
from llmserve.engine_api import QueueFullError, SamplingParams
from llmserve.scheduler import MIN_PREFILL_TOKENS, Plan, Scheduler
from llmserve.sequence import Sequence


def seq(name: str, prompt_tokens: int = 4, **params: object) -> Sequence:
    # The scheduler never reads the detokenizer.
    return Sequence(
        name,
        [1] * prompt_tokens,
        SamplingParams(max_tokens=8, **params),  # type: ignore[arg-type]
        detok=cast(IncrementalDetokenizer, None),
    )


def schedule(scheduler: Scheduler) -> tuple[list[Sequence], list[Sequence]]:
    plan = scheduler.schedule()
    assert plan.chunk is None
    return plan.admitted, plan.cancelled


def names(seqs: list[Sequence]) -> list[str]:
    return [s.request_id for s in seqs]


def test_the_queue_bound_counts_free_batch_slots() -> None:
    scheduler = Scheduler(max_batch=2, max_queue=1, max_step_tokens=1000)
    for name in ("a", "b", "c"):  # one queue slot plus two free batch slots
        scheduler.add(seq(name))
    with pytest.raises(QueueFullError, match=r"3 requests are waiting \(limit 1\)"):
        scheduler.add(seq("d"))
    admitted, cancelled = schedule(scheduler)
    scheduler.start(admitted)
    assert [s.request_id for s in admitted] == ["a", "b"] and not cancelled
    with pytest.raises(QueueFullError):  # batch full: "c" alone fills the queue now
        scheduler.add(seq("d"))
    scheduler.running[0].finished = True
    scheduler.retire_finished()
    scheduler.add(seq("d"))  # a slot came free


def test_admission_stops_at_free_slots_and_the_step_budget() -> None:
    scheduler = Scheduler(max_batch=3, max_queue=10, max_step_tokens=40)
    for name, tokens in (("a", 16), ("b", 20), ("c", 1), ("d", 100)):
        scheduler.add(seq(name, tokens))
    plan = scheduler.schedule()
    # 3 rows x 20 padded tokens > 40: "c" waits (whole prompts that fit are never chunked)
    assert names(plan.admitted) == ["a", "b"] and plan.chunk is None
    scheduler.start(plan.admitted)
    plan = scheduler.schedule()
    assert names(plan.admitted) == ["c"]  # one slot left
    scheduler.start(plan.admitted)
    assert scheduler.schedule() == Plan()
    for s in scheduler.running:
        s.finished = True
    assert scheduler.retire_finished() == []
    plan = scheduler.schedule()  # over the budget: chunked, not admitted whole
    assert plan.admitted == [] and plan.chunk is not None and plan.chunk.request_id == "d"
    assert plan.chunk_tokens == 40


def test_the_budget_floor_keeps_prefill_moving_under_a_large_batch() -> None:
    scheduler = Scheduler(max_batch=64, max_queue=10, max_step_tokens=40)
    for i in range(40):
        scheduler.add(seq(f"r{i}", 1))
    scheduler.start(schedule(scheduler)[0])
    assert len(scheduler.running) == 40  # 40 one-token prompts: the whole budget
    scheduler.add(seq("long", 100))
    plan = scheduler.schedule()  # 40 rows decode: the budget is spent, the floor remains
    assert plan.chunk is not None and plan.chunk_tokens == MIN_PREFILL_TOKENS


def test_a_long_prompt_is_chunked_while_the_batch_decodes() -> None:
    scheduler = Scheduler(max_batch=4, max_queue=10, max_step_tokens=100)
    scheduler.add(seq("run", 10))
    scheduler.start(schedule(scheduler)[0])
    scheduler.add(seq("long", 250))
    scheduler.add(seq("short", 5))
    chunks, joined = [], []
    while True:
        plan = scheduler.schedule()
        assert plan.chunk is not None and plan.chunk.request_id == "long"
        chunks.append(plan.chunk_tokens)
        joined.append(names(plan.admitted))
        plan.chunk.prefilled += plan.chunk_tokens  # what the model runner does
        if plan.chunk.prefilled == 250:
            scheduler.start([plan.chunk])
            break
        assert scheduler.cache_tokens == 10 + plan.chunk.prefilled
    assert chunks == [99, 99, 52]  # the budget less one token for the decoding row
    # "short" queued behind the long prompt joins with the budget its last chunk leaves
    assert joined == [[], [], ["short"]]
    scheduler.start([s for s in scheduler.waiting])
    assert scheduler.prefilling is None


def test_leftover_budget_admits_short_prompts_and_starts_a_chunk() -> None:
    scheduler = Scheduler(max_batch=8, max_queue=10, max_step_tokens=64)
    for name, tokens in (("a", 8), ("b", 8), ("long", 200), ("c", 4)):
        scheduler.add(seq(name, tokens))
    plan = scheduler.schedule()
    assert names(plan.admitted) == ["a", "b"]
    assert plan.chunk is not None and plan.chunk.request_id == "long"
    assert plan.chunk_tokens == 64 - 2 * 8
    assert names(list(scheduler.waiting)) == ["c"]


def test_prompt_logprobs_go_through_the_chunked_path() -> None:
    scheduler = Scheduler(max_batch=8, max_queue=10, max_step_tokens=64)
    scheduler.add(seq("plain", 4))
    scheduler.add(seq("echo", 4, prompt_logprobs=0))
    plan = scheduler.schedule()
    assert names(plan.admitted) == ["plain"]
    assert plan.chunk is not None and plan.chunk.request_id == "echo" and plan.chunk_tokens == 4


def test_a_cancelled_chunked_prefill_is_dropped_with_its_cache() -> None:
    scheduler = Scheduler(max_batch=2, max_queue=1, max_step_tokens=50)
    long = seq("long", 200)
    scheduler.add(long)
    plan = scheduler.schedule()
    assert plan.chunk is long
    long.prefilled, long.chunk_cache = 50, object()
    with pytest.raises(QueueFullError):  # the chunked prompt holds one of the two slots
        for name in ("x", "y", "z"):
            scheduler.add(seq(name))
    scheduler.waiting.clear()
    scheduler.cancel("long")
    plan = scheduler.schedule()
    assert plan.cancelled == [long] and plan.chunk is None
    assert scheduler.prefilling is None and long.chunk_cache is None
    assert not scheduler.has_work()


def test_cancellation_reaches_the_queue_and_the_batch() -> None:
    scheduler = Scheduler(max_batch=2, max_queue=10, max_step_tokens=1000)
    for name in ("a", "b", "c", "d"):
        scheduler.add(seq(name))
    admitted, _ = schedule(scheduler)
    scheduler.start(admitted)
    scheduler.running[0].output_ids = [7, 7, 7]
    scheduler.retire_finished()
    assert scheduler.cache_tokens == 4 + 7
    for name in ("a", "c", "unknown"):
        scheduler.cancel(name)
    assert scheduler.has_work()
    admitted, cancelled = schedule(scheduler)
    assert names(cancelled) == ["c", "a"]
    assert [s.finished for s in cancelled] == [False, True]  # only a running one is marked
    assert admitted == []  # "a" still holds its slot until it is retired
    assert scheduler.retire_finished() == [1]  # the cache keeps row 1 ("b")
    assert scheduler.cache_tokens == 4
    admitted, _ = schedule(scheduler)
    assert [s.request_id for s in admitted] == ["d"]
    scheduler.start(admitted)
    assert [s.request_id for s in scheduler.drain()] == ["b", "d"]
    assert not scheduler.has_work() and scheduler.cache_tokens == 0

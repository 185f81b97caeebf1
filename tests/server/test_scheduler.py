"""The scheduler on its own, without a model: the queue's bound counts the batch's free slots,
admission stops at the batch's slots and at the prefill's padded-token budget, and cancellation
finds a request in the queue or in the batch."""

from __future__ import annotations

from typing import cast

import pytest
from llmserve.detokenize import IncrementalDetokenizer
from llmserve.engine_api import QueueFullError, SamplingParams
from llmserve.scheduler import Scheduler
from llmserve.sequence import Sequence


def seq(name: str, prompt_tokens: int = 4) -> Sequence:
    # The scheduler never reads the detokenizer.
    return Sequence(name, [1] * prompt_tokens, SamplingParams(max_tokens=8),
                    detok=cast(IncrementalDetokenizer, None))


def test_the_queue_bound_counts_free_batch_slots() -> None:
    scheduler = Scheduler(max_batch=2, max_queue=1, max_prefill_tokens=1000)
    for name in ("a", "b", "c"):  # one queue slot plus two free batch slots
        scheduler.add(seq(name))
    with pytest.raises(QueueFullError, match=r"3 requests are waiting \(limit 1\)"):
        scheduler.add(seq("d"))
    admitted, cancelled = scheduler.schedule()
    scheduler.start(admitted)
    assert [s.request_id for s in admitted] == ["a", "b"] and not cancelled
    with pytest.raises(QueueFullError):  # batch full: "c" alone fills the queue now
        scheduler.add(seq("d"))
    scheduler.running[0].finished = True
    scheduler.retire_finished()
    scheduler.add(seq("d"))  # a slot came free


def test_admission_stops_at_free_slots_and_the_prefill_budget() -> None:
    scheduler = Scheduler(max_batch=3, max_queue=10, max_prefill_tokens=10)
    for name, tokens in (("a", 4), ("b", 5), ("c", 1), ("d", 30)):
        scheduler.add(seq(name, tokens))
    admitted, _ = scheduler.schedule()
    assert [s.request_id for s in admitted] == ["a", "b"]  # 3 rows x 5 padded tokens > 10
    scheduler.start(admitted)
    admitted, _ = scheduler.schedule()
    assert [s.request_id for s in admitted] == ["c"]  # one slot left
    scheduler.start(admitted)
    assert scheduler.schedule() == ([], [])
    for s in scheduler.running:
        s.finished = True
    assert scheduler.retire_finished() == []
    admitted, _ = scheduler.schedule()
    assert [s.request_id for s in admitted] == ["d"]  # over the budget, but alone: admitted


def test_cancellation_reaches_the_queue_and_the_batch() -> None:
    scheduler = Scheduler(max_batch=2, max_queue=10, max_prefill_tokens=1000)
    for name in ("a", "b", "c", "d"):
        scheduler.add(seq(name))
    admitted, _ = scheduler.schedule()
    scheduler.start(admitted)
    scheduler.running[0].generated = 3
    scheduler.retire_finished()
    assert scheduler.cache_tokens == 4 + 7
    for name in ("a", "c", "unknown"):
        scheduler.cancel(name)
    assert scheduler.has_work()
    admitted, cancelled = scheduler.schedule()
    assert [s.request_id for s in cancelled] == ["c", "a"]
    assert [s.finished for s in cancelled] == [False, True]  # only a running one is marked
    assert admitted == []  # "a" still holds its slot until it is retired
    assert scheduler.retire_finished() == [1]  # the cache keeps row 1 ("b")
    assert scheduler.cache_tokens == 4
    admitted, _ = scheduler.schedule()
    assert [s.request_id for s in admitted] == ["d"]
    scheduler.start(admitted)
    assert [s.request_id for s in scheduler.drain()] == ["b", "d"]
    assert not scheduler.has_work() and scheduler.cache_tokens == 0

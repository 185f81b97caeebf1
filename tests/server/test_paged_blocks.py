"""The paged cache's bookkeeping without a model: the block manager's free list, reference counts,
chained prefix hashes and LRU eviction; the scheduler's admission by free blocks, preemption of
the newest request (back to the head of the queue, blocks returned) and prefix reuse; and the
slot layout one forward writes and reads."""

from __future__ import annotations

from typing import cast

import pytest
import torch
from llmserve.block_manager import BlockManager, BlockPoolExhaustedError, block_hashes
from llmserve.detokenize import IncrementalDetokenizer
from llmserve.engine_api import SamplingParams
from llmserve.paged_cache import plan_step
from llmserve.scheduler import MIN_PREFILL_TOKENS, Scheduler
from llmserve.sequence import Sequence


def seq(name: str, prompt: list[int], **params: object) -> Sequence:
    return Sequence(
        name,
        prompt,
        SamplingParams(max_tokens=100, **params),  # type: ignore[arg-type]
        detok=cast(IncrementalDetokenizer, None),  # the scheduler never reads it
    )


# ----------------------------------------------------------------------------- block manager
def test_blocks_are_counted_shared_and_returned() -> None:
    blocks = BlockManager(4, 2)
    a = blocks.allocate(3)
    assert len(set(a)) == 3 and blocks.free_blocks == 1 and blocks.used_blocks == 3
    with pytest.raises(BlockPoolExhaustedError, match="2 blocks asked for, 1 free of 4"):
        blocks.allocate(2)
    b = blocks.allocate(1, reused=a[:2])  # shares two of a's blocks
    assert b[:2] == a[:2] and blocks.free_blocks == 0
    blocks.free(a)
    assert blocks.free_blocks == 1  # only a[2] was a's alone
    blocks.free(b)
    assert blocks.free_blocks == 4
    with pytest.raises(RuntimeError, match="freed more often"):
        blocks.free(b[:1])


def test_hashes_chain_the_whole_prefix() -> None:
    one = block_hashes([1, 2, 3, 4, 5], 2, [])
    assert len(one) == 2  # full blocks only
    assert block_hashes([1, 2, 3, 4, 5, 6], 2, one)[:2] == one  # extends what it had
    # the same block after a different prefix is a different block
    assert block_hashes([9, 9, 3, 4], 2, [])[1] != one[1]


def test_a_cached_prefix_is_reused_and_leaves_a_token_to_compute() -> None:
    blocks = BlockManager(8, 2)
    prompt = [1, 2, 3, 4, 5, 6]
    hashes = block_hashes(prompt, 2, [])
    table = blocks.allocate(4)
    blocks.register(table, hashes)
    assert blocks.cached_prefix(hashes, 6) == table[:2]  # not all 3: one token is computed
    assert blocks.cached_prefix(hashes, 7) == table[:3]
    assert blocks.cached_prefix(block_hashes([1, 2, 7, 7, 7], 2, []), 5) == table[:1]
    assert BlockManager(8, 2, prefix_caching=False).cached_prefix(hashes, 7) == []


def test_freed_cached_blocks_stay_reusable_until_evicted_least_recent_first() -> None:
    blocks = BlockManager(4, 2)
    old, new = block_hashes([1, 1, 1, 1], 2, []), block_hashes([2, 2, 2, 2], 2, [])
    first, second = blocks.allocate(2), blocks.allocate(2)
    blocks.register(first, old)
    blocks.register(second, new)
    blocks.free(first)
    blocks.free(second)
    assert blocks.free_blocks == 4
    assert blocks.cached_prefix(old, 5) == first  # free, still cached
    assert blocks.can_allocate(2, reused=first) and not blocks.can_allocate(3, reused=first)
    # One fresh block: taken from the least recently freed (first's last block goes first).
    fresh = blocks.allocate(1)
    assert fresh == [first[1]] and blocks.cached_prefix(old, 5) == first[:1]
    assert blocks.cached_prefix(new, 5) == second


def test_unregistered_free_blocks_are_handed_out_before_cached_ones() -> None:
    blocks = BlockManager(3, 2)
    cached, plain = blocks.allocate(1), blocks.allocate(2)
    blocks.register(cached, block_hashes([5, 5], 2, []))
    blocks.free(cached)
    blocks.free(plain)
    assert set(blocks.allocate(2)) == set(plain)


# ----------------------------------------------------------------------------- scheduler
def paged_scheduler(num_blocks: int, block_size: int = 4, **kwargs: int) -> Scheduler:
    return Scheduler(
        max_batch=kwargs.get("max_batch", 8),
        max_queue=10,
        max_step_tokens=kwargs.get("budget", 1000),
        blocks=BlockManager(num_blocks, block_size),
    )


def prefill(scheduler: Scheduler, seqs: list[Sequence]) -> None:
    """What the model runner and output stage do for admitted requests (and one decode)."""
    for s in seqs:
        s.prefilled = s.position = s.tokens
        scheduler.start([s])
        s.output_ids.append(7)


def test_admission_waits_for_free_blocks_in_arrival_order() -> None:
    scheduler = paged_scheduler(6)
    a, b, c = seq("a", [1] * 10), seq("b", [2] * 10), seq("c", [3] * 2)
    for s in (a, b, c):
        scheduler.add(s)
    plan = scheduler.schedule()
    # a takes 3 blocks (10 tokens + its first decode token); b needs 3 more: they are free
    assert plan.admitted == [a, b] and len(a.block_table) == len(b.block_table) == 3
    prefill(scheduler, plan.admitted)
    plan = scheduler.schedule()
    assert plan.admitted == [] and list(scheduler.waiting) == [c]  # no block left for c
    assert scheduler.cache_tokens == 6 * 4


def test_a_cancelled_request_frees_its_blocks_for_the_same_step() -> None:
    scheduler = paged_scheduler(6)
    a, b, c = seq("a", [1] * 10), seq("b", [2] * 10), seq("c", [3] * 2)
    scheduler.add(a)
    scheduler.add(b)
    prefill(scheduler, scheduler.schedule().admitted)
    scheduler.add(c)
    scheduler.cancel("a")
    plan = scheduler.schedule()
    assert plan.cancelled == [a] and a.block_table == [] and plan.admitted == [c]
    assert scheduler.retire_finished() == [1] and scheduler.running == [b]


def test_decode_out_of_blocks_preempts_the_newest_to_the_head_of_the_queue() -> None:
    scheduler = paged_scheduler(6)
    a, b = seq("a", [1] * 11), seq("b", [2] * 11)
    waiting = seq("w", [3] * 2)
    scheduler.add(a)
    scheduler.add(b)
    prefill(scheduler, scheduler.schedule().admitted)  # 3 blocks each: 12 slots
    scheduler.add(waiting)
    for s in (a, b):  # both decoded slot 11: the next token needs a fourth block each
        s.position = 12
        s.output_ids.append(8)
    plan = scheduler.schedule()
    assert plan.preempted == [b] and scheduler.running == [a] and len(a.block_table) == 4
    assert list(scheduler.waiting) == [b, waiting] and b.block_table == [] and b.preemptions == 1
    assert scheduler.preemptions == 1 and plan.admitted == []  # b waits for its blocks first
    # b comes back with its generated tokens: 11 + 2 = 13 tokens to recompute, 4 blocks
    a.finished = True
    scheduler.retire_finished()
    plan = scheduler.schedule()
    assert plan.admitted[0] is b and b.context_ids == [2] * 11 + [7, 8]
    # its prompt's blocks were cached when it first ran, and not evicted since: only the
    # rest is computed again
    assert b.prefilled == 8 and len(b.block_table) == 4


def test_out_of_blocks_the_prompt_being_chunked_is_preempted_first() -> None:
    scheduler = paged_scheduler(13, budget=8)
    run = seq("run", [1] * 7)
    scheduler.add(run)
    prefill(scheduler, scheduler.schedule().admitted)  # 2 blocks
    long = seq("long", [2] * 40)
    scheduler.add(long)
    plan = scheduler.schedule()  # over the budget: its chunked prefill starts, 11 blocks
    assert plan.chunk is long and plan.chunk_tokens == MIN_PREFILL_TOKENS
    assert len(long.block_table) == 11 and scheduler.blocks is not None
    assert scheduler.blocks.free_blocks == 0
    long.prefilled += plan.chunk_tokens
    run.position = 8  # needs a third block: the chunked prompt is the newest, it goes
    plan = scheduler.schedule()
    assert plan.preempted == [long] and len(run.block_table) == 3
    assert scheduler.prefilling is None and plan.chunk is None  # 10 blocks free: it waits
    assert list(scheduler.waiting) == [long] and long.prefilled == 0
    # the 8 blocks its first chunk wrote stay cached; the 3 it had not written yet do not
    assert len(scheduler.blocks.cached_prefix(long.block_hashes, 40)) == 8


def test_prompt_logprobs_requests_do_not_reuse_cached_blocks() -> None:
    scheduler = paged_scheduler(16)
    first = seq("first", [4] * 12)
    scheduler.add(first)
    prefill(scheduler, scheduler.schedule().admitted)
    echo, plain = seq("echo", [4] * 12, prompt_logprobs=1), seq("plain", [4] * 12)
    scheduler.add(plain)
    scheduler.add(echo)
    plan = scheduler.schedule()
    assert plan.admitted == [plain] and plain.prefilled == 8
    assert plain.block_table[:2] == first.block_table[:2]
    assert plan.chunk is echo and echo.prefilled == 0
    assert not set(echo.block_table) & set(first.block_table)
    blocks = scheduler.blocks
    assert blocks is not None and (blocks.queried_tokens, blocks.hit_tokens) == (36, 8)


# ----------------------------------------------------------------------------- slot layout
def test_the_step_layout_maps_positions_to_slots_and_masks_padding() -> None:
    # row 0: 2 cached tokens + 3 new in blocks [5, 1]; row 1: 1 new token after 4, blocks [2, 0]
    layout = plan_step([[5, 1], [2, 0]], [2, 4], [3, 1], 4, torch.device("cpu"))
    assert layout.positions.tolist() == [[2, 3, 4], [0, 0, 4]]
    assert layout.write_slots.tolist() == [22, 23, 4, 0]  # 5*4+2, 5*4+3, 1*4+0; 0*4+0
    assert layout.write_rows.tolist() == [0, 1, 2, 5]
    assert layout.read_slots.tolist() == [[20, 21, 22, 23, 4], [8, 9, 10, 11, 0]]
    mask = layout.mask[:, 0].int().tolist()
    assert mask[0] == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert mask[1] == [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]  # padding sees col 0

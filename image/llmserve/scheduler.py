"""Which requests run: admission into a bounded queue, cancellation, the batch's slots and each
step's token budget.

Requests wait in arrival order in a queue bounded by `max_queue` (plus the batch's free slots,
so a burst the batch can take at once is never refused). Before every step, cancelled requests
leave the queue and the batch. Then the step's token budget (`max_step_tokens`, shared with the
running rows' decode: one token each) is handed out in arrival order:

1. the prompt being prefilled in chunks, if any, gets its next chunk;
2. whole prompts from the head of the queue join in one left-padded prefill while a slot is free
   and their padded tokens fit what is left;
3. if the head prompt does not fit whole (or wants prompt logprobs, which come from chunks) and
   no prompt is being chunked, it starts its chunked prefill with what is left.

With the padded cache's prefix caching (prompt_reuse.py), a head prompt that shares at least
MIN_REUSED_TOKENS with the last finished row takes the chunked path in step 3 even when it
fits whole (the prompts behind it may still join whole): its cache starts as a copy of that
prefix, made in the step, so only the rest is prefilled.

So one long prompt is prefilled a chunk per step while the running requests keep decoding,
instead of stalling them for its whole prefill (vLLM's chunked prefill, on our padded cache).
With the padded cache there is no preemption: a running request keeps its slot until it
finishes, is cancelled or its step fails.

With the paged cache (a `BlockManager`), blocks decide too. Before a step every running request
gets the block its next token needs; when none is free the newest request (the prompt being
chunked, else the last to join) is preempted: its blocks go back, and it goes back to the head
of the queue with its prompt and the tokens generated so far, to be prefilled again (recompute)
and carry on; its client sees nothing but a pause. A prompt is admitted (or starts its chunked
prefill) only when blocks are free for its whole context plus the step's decode token, taking
the blocks of its longest cached prefix from the prefix cache and prefilling only the rest; once
written, its full blocks are registered there for later requests (and when it leaves or is
preempted, the full blocks of what it generated too).

Not thread-safe on its own: the engine calls `add`, `cancel`, `has_work`, `schedule` and `drain`
with its lock held (they run on the event loop and on the engine's thread); the rest only on the
engine's thread, which alone changes the running batch."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from llmserve.block_manager import BlockManager, block_hashes
from llmserve.engine_api import QueueFullError
from llmserve.prompt_reuse import LastPromptCache
from llmserve.sequence import Sequence

# However many rows decode, a step prefills at least this many prompt tokens, so the queue
# always moves (a batch of more rows than the budget would otherwise starve it).
MIN_PREFILL_TOKENS = 32


@dataclass
class Plan:
    """One step's work, from `Scheduler.schedule`."""

    admitted: list[Sequence] = field(default_factory=list)  # whole prompts, prefilled together
    chunk: Sequence | None = None  # the prompt getting a chunk this step
    chunk_tokens: int = 0
    cancelled: list[Sequence] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)  # back to the queue (paged cache)


class Scheduler:
    def __init__(
        self,
        *,
        max_batch: int,
        max_queue: int,
        max_step_tokens: int,
        blocks: BlockManager | None = None,
        reuse: LastPromptCache | None = None,
    ) -> None:
        if blocks is not None and reuse is not None:
            raise ValueError("the paged cache has its own prefix caching; pass blocks or reuse")
        self.blocks = blocks  # the paged cache's pool; None: the padded cache
        self.reuse = reuse  # the padded cache's prefix caching (prompt_reuse.py), if on
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_step_tokens = max_step_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # in the order of the batch cache's rows
        self.prefilling: Sequence | None = None  # a prompt part-way through its chunks
        self._cancelled: set[str] = set()
        self.preemptions = 0  # requests sent back to the queue so far (paged cache)

    # ------------------------------------------------------------------ with the engine's lock
    def add(self, seq: Sequence) -> None:
        """Queue a request, or raise QueueFullError when the queue is at its bound."""
        free_slots = max(0, self.max_batch - self._slots_taken())
        if len(self.waiting) >= self.max_queue + free_slots:
            raise QueueFullError(
                f"{len(self.waiting)} requests are waiting (limit {self.max_queue})"
            )
        self.waiting.append(seq)

    def cancel(self, request_id: str) -> None:
        """Mark a request for removal before the next step, wherever it is by then."""
        self._cancelled.add(request_id)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.prefilling or self._cancelled)

    def schedule(self) -> Plan:
        """The next step's plan. Cancelled running ones are marked finished (retire_finished
        takes them out of the batch); a cancelled chunked prefill is dropped with its cache.
        Admitted ones are not running yet: start() adds them once their prefill has run."""
        cancelled_ids, self._cancelled = self._cancelled, set()
        plan = Plan()
        if cancelled_ids:
            plan.cancelled = [s for s in self.waiting if s.request_id in cancelled_ids]
            self.waiting = deque(s for s in self.waiting if s.request_id not in cancelled_ids)
            if self.prefilling is not None and self.prefilling.request_id in cancelled_ids:
                self.prefilling.chunk_cache = None
                self.release(self.prefilling)
                plan.cancelled.append(self.prefilling)
                self.prefilling = None
            for seq in self.running:
                if seq.request_id in cancelled_ids:
                    seq.finished = True
                    self.retire_blocks(seq)  # now, so this step can grow and admit with them
                    plan.cancelled.append(seq)
        if self.blocks is not None:
            self._grow_running(plan, self.blocks)
        self._plan_prefill(plan)
        return plan

    def drain(self) -> list[Sequence]:
        """Empty the queue and the batch (the engine is stopping); returns who was in them."""
        leftovers = [*self.waiting, *([self.prefilling] if self.prefilling else []), *self.running]
        self.waiting.clear()
        self.prefilling = None
        self.clear_running()
        return leftovers

    # ------------------------------------------------------------------ engine thread only
    def start(self, seqs: list[Sequence]) -> None:
        """Prefilled requests join the batch (their cache rows were appended in this order)."""
        for seq in seqs:
            if seq is self.prefilling:
                self.prefilling = None
            if self.blocks is not None:  # its context is written: its full blocks are reusable
                seq.block_hashes = block_hashes(
                    seq.context_ids, self.blocks.block_size, seq.block_hashes
                )
                self.blocks.register(seq.block_table, seq.block_hashes)
        self.running.extend(seqs)

    def retire_finished(self) -> list[int] | None:
        """Take finished requests out of the batch. Returns the rows the batch keeps, or None
        when every row stays."""
        keep = [i for i, s in enumerate(self.running) if not s.finished]
        rows: list[int] | None = None
        if len(keep) != len(self.running):
            for seq in self.running:
                if seq.finished:
                    self.retire_blocks(seq)
            self.running = [self.running[i] for i in keep]
            rows = keep
        if self.prefilling is not None and self.prefilling.finished:
            self.retire_blocks(self.prefilling)
            self.prefilling = None
        return rows

    def clear_running(self) -> None:
        """Forget the batch (a failed step, or stopping). With the paged cache their blocks go
        back, and the prefix cache is emptied: a failed step may have left any block half
        written."""
        for seq in [*self.running, *([self.prefilling] if self.prefilling else [])]:
            self.release(seq)
        self.running = []
        self.prefilling = None
        if self.blocks is not None:
            self.blocks.clear_prefix_cache()

    # ------------------------------------------------------------------ internals
    def _slots_taken(self) -> int:
        return len(self.running) + (1 if self.prefilling is not None else 0)

    @property
    def cache_tokens(self) -> int:
        """Prompt and generated tokens the batch holds in the cache, counted when asked (for
        /metrics) rather than after every step: summing 256 rows each step cost ~0.5 ms. With
        the paged cache: the tokens of the blocks in use (cached free blocks not counted)."""
        if self.blocks is not None:
            return self.blocks.used_blocks * self.blocks.block_size
        running, prefilling = tuple(self.running), self.prefilling
        chunked = prefilling.prefilled if prefilling is not None else 0
        return sum(s.tokens for s in running) + chunked

    def _plan_prefill(self, plan: Plan) -> None:
        budget = max(self.max_step_tokens - len(self.running), MIN_PREFILL_TOKENS)
        if self.prefilling is not None:
            plan.chunk = self.prefilling
            plan.chunk_tokens = min(budget, self.prefilling.tokens - self.prefilling.prefilled)
            budget -= plan.chunk_tokens
        longest = 0
        while self.waiting and self._slots_taken() + len(plan.admitted) < self.max_batch:
            head = self.waiting[0]
            cached = self._cached_prefix(head)
            if cached is None:  # paged: not enough free blocks, it waits (and all behind it)
                break
            # a prompt that reuses the padded cache's last row goes the chunked way, on a
            # cache of its own seeded with the shared prefix (only while none is chunking)
            reused = self._reusable(head) if plan.chunk is None else 0
            length = head.tokens - len(cached) * self._block_size - reused
            longest_if_added = max(longest, length)
            fits = longest_if_added * (len(plan.admitted) + 1) <= budget
            if fits and head.params.prompt_logprobs is None and not reused:
                plan.admitted.append(self._take_head(cached))
                longest = longest_if_added
                continue
            if plan.chunk is None and budget - longest * len(plan.admitted) > 0:
                self.prefilling = plan.chunk = self._take_head(cached, reused)
                plan.chunk_tokens = min(length, budget - longest * len(plan.admitted))
                if reused:  # it fitted: the prompts behind it may still join whole
                    budget -= plan.chunk_tokens
                    continue
            break

    # ------------------------------------------------------------------ paged cache
    @property
    def _block_size(self) -> int:
        return self.blocks.block_size if self.blocks is not None else 1

    def _cached_prefix(self, seq: Sequence) -> list[int] | None:
        """The cached blocks the head of the queue would reuse, or None when the blocks for
        the rest of its context (and its first decode token) are not free. A request that
        wants prompt logprobs reuses nothing: they come from its own prefill."""
        blocks = self.blocks
        if blocks is None:
            return []
        cached: list[int] = []
        if seq.params.prompt_logprobs is None and blocks.prefix_caching:
            seq.block_hashes = block_hashes(seq.context_ids, blocks.block_size, seq.block_hashes)
            cached = blocks.cached_prefix(seq.block_hashes, seq.tokens)
        needed = blocks.blocks_for(seq.tokens + 1) - len(cached)
        return cached if blocks.can_allocate(needed, cached) else None

    def _reusable(self, seq: Sequence) -> int:
        """Prompt tokens the padded cache's last row would give `seq` (0 when that prefix
        caching is off, and always with the paged cache, whose blocks do this)."""
        return 0 if self.reuse is None else self.reuse.reusable(seq.prompt_ids, seq.params)

    def _take_head(self, cached: list[int], reused: int = 0) -> Sequence:
        seq = self.waiting.popleft()
        if self.reuse is not None:
            # The prefix is copied in the step (engine.py), where a failure fails the step
            # instead of the engine, and not under the lock that submit() waits on.
            self.reuse.queried += len(seq.prompt_ids)
            seq.prefilled = reused
        if self.blocks is not None:
            needed = self.blocks.blocks_for(seq.tokens + 1) - len(cached)
            seq.block_table = self.blocks.allocate(needed, cached)
            seq.prefilled = len(cached) * self.blocks.block_size
            if seq.preemptions == 0:  # a recompute is not a new query
                self.blocks.count_query(seq.tokens, len(cached))
        return seq

    def _grow_running(self, plan: Plan, blocks: BlockManager) -> None:
        """Give every running request the block its next decode token needs, preempting the
        newest requests while none is free."""
        i = 0
        while i < len(self.running):
            seq = self.running[i]
            if seq.finished or blocks.blocks_for(seq.position + 1) <= len(seq.block_table):
                i += 1
                continue
            while not blocks.can_allocate(1) and seq in self.running:
                self._preempt(self._newest(), plan)
            if seq in self.running:  # else it was the newest itself: the rest are finished
                seq.block_table.extend(blocks.allocate(1))
                i += 1

    def _newest(self) -> Sequence:
        if self.prefilling is not None:
            return self.prefilling
        live = [s for s in self.running if not s.finished]
        return live[-1]

    def _preempt(self, seq: Sequence, plan: Plan) -> None:
        """Take its blocks back; it waits at the head of the queue to be prefilled again (its
        written blocks stay cached, so unless they are evicted meanwhile the recompute is
        short)."""
        self.retire_blocks(seq)
        if seq is self.prefilling:
            self.prefilling = None
        else:
            self.running.remove(seq)
        seq.prefilled = seq.position = 0
        seq.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(seq)
        plan.preempted.append(seq)

    def retire_blocks(self, seq: Sequence) -> None:
        """Register every full block it has written (generated tokens too: a chat's next turn
        repeats this answer, a preempted request recomputes it) and give its blocks back."""
        blocks = self.blocks
        if blocks is not None and seq.block_table:
            written = max(seq.position, seq.prefilled)  # tokens whose keys/values are in
            seq.block_hashes = block_hashes(
                seq.context_ids[:written], blocks.block_size, seq.block_hashes
            )
            # (the hashes may run ahead: a chunked prompt has them for blocks not written yet)
            blocks.register(seq.block_table, seq.block_hashes[: written // blocks.block_size])
        self.release(seq)

    def release(self, seq: Sequence) -> None:
        """Give its blocks back (paged cache); a no-op for one that holds none."""
        if self.blocks is not None and seq.block_table:
            self.blocks.free(seq.block_table)
            seq.block_table = []

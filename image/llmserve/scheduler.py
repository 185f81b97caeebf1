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

So one long prompt is prefilled a chunk per step while the running requests keep decoding,
instead of stalling them for its whole prefill (vLLM's chunked prefill, on our padded cache).
There is no preemption: the cache is not paged, so a running request keeps its slot until it
finishes, is cancelled or its step fails.

Not thread-safe on its own: the engine calls `add`, `cancel`, `has_work`, `schedule` and `drain`
with its lock held (they run on the event loop and on the engine's thread); the rest only on the
engine's thread, which alone changes the running batch."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from llmserve.engine_api import QueueFullError
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


class Scheduler:
    def __init__(self, *, max_batch: int, max_queue: int, max_step_tokens: int) -> None:
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_step_tokens = max_step_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # in the order of the batch cache's rows
        self.prefilling: Sequence | None = None  # a prompt part-way through its chunks
        self._cancelled: set[str] = set()

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
                plan.cancelled.append(self.prefilling)
                self.prefilling = None
            for seq in self.running:
                if seq.request_id in cancelled_ids:
                    seq.finished = True
                    plan.cancelled.append(seq)
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
        self.running.extend(seqs)

    def retire_finished(self) -> list[int] | None:
        """Take finished requests out of the batch. Returns the rows the batch keeps, or None
        when every row stays."""
        keep = [i for i, s in enumerate(self.running) if not s.finished]
        rows: list[int] | None = None
        if len(keep) != len(self.running):
            self.running = [self.running[i] for i in keep]
            rows = keep
        if self.prefilling is not None and self.prefilling.finished:
            self.prefilling = None
        return rows

    def clear_running(self) -> None:
        self.running = []
        self.prefilling = None

    # ------------------------------------------------------------------ internals
    def _slots_taken(self) -> int:
        return len(self.running) + (1 if self.prefilling is not None else 0)

    @property
    def cache_tokens(self) -> int:
        """Prompt and generated tokens the batch holds in the cache, counted when asked (for
        /metrics) rather than after every step: summing 256 rows each step cost ~0.5 ms."""
        running, prefilling = tuple(self.running), self.prefilling
        chunked = prefilling.prefilled if prefilling is not None else 0
        return sum(s.tokens for s in running) + chunked

    def _plan_prefill(self, plan: Plan) -> None:
        budget = max(self.max_step_tokens - len(self.running), MIN_PREFILL_TOKENS)
        if self.prefilling is not None:
            plan.chunk = self.prefilling
            plan.chunk_tokens = min(
                budget, len(self.prefilling.prompt_ids) - self.prefilling.prefilled
            )
            budget -= plan.chunk_tokens
        longest = 0
        while self.waiting and self._slots_taken() + len(plan.admitted) < self.max_batch:
            head = self.waiting[0]
            length = len(head.prompt_ids)
            longest_if_added = max(longest, length)
            fits = longest_if_added * (len(plan.admitted) + 1) <= budget
            if fits and head.params.prompt_logprobs is None:
                plan.admitted.append(self.waiting.popleft())
                longest = longest_if_added
                continue
            if plan.chunk is None and budget - longest * len(plan.admitted) > 0:
                self.prefilling = plan.chunk = self.waiting.popleft()
                plan.chunk_tokens = min(length, budget - longest * len(plan.admitted))
            break

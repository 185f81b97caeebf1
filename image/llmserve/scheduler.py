"""Which requests run: admission into a bounded queue, cancellation, and the batch's slots.

Requests wait in arrival order in a queue bounded by `max_queue` (plus the batch's free slots,
so a burst the batch can take at once is never refused). Before every step, cancelled requests
leave the queue and the batch, and the head of the queue joins the batch while a slot is free and
the padded prefill stays within `max_prefill_tokens`. There is no preemption: the cache is not
paged, so a running request keeps its slot until it finishes, is cancelled or its step fails.

Not thread-safe on its own: the engine calls `add`, `cancel`, `has_work`, `schedule` and `drain`
with its lock held (they run on the event loop and on the engine's thread); the rest only on the
engine's thread, which alone changes the running batch."""

from __future__ import annotations

from collections import deque

from llmserve.engine_api import QueueFullError
from llmserve.sequence import Sequence


class Scheduler:
    def __init__(self, *, max_batch: int, max_queue: int, max_prefill_tokens: int) -> None:
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_prefill_tokens = max_prefill_tokens  # padded prompt tokens in one prefill
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # in the order of the batch cache's rows
        self.cache_tokens = 0  # prompt + generated tokens of the running batch
        self._cancelled: set[str] = set()

    # ------------------------------------------------------------------ with the engine's lock
    def add(self, seq: Sequence) -> None:
        """Queue a request, or raise QueueFullError when the queue is at its bound."""
        free_slots = max(0, self.max_batch - len(self.running))
        if len(self.waiting) >= self.max_queue + free_slots:
            raise QueueFullError(
                f"{len(self.waiting)} requests are waiting (limit {self.max_queue})"
            )
        self.waiting.append(seq)

    def cancel(self, request_id: str) -> None:
        """Mark a request for removal before the next step, wherever it is by then."""
        self._cancelled.add(request_id)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self._cancelled)

    def schedule(self) -> tuple[list[Sequence], list[Sequence]]:
        """The next step's (admitted, cancelled) requests. Cancelled running ones are marked
        finished (retire_finished takes them out of the batch); admitted ones are not running
        yet: start() adds them once their prefill has run."""
        cancelled_ids, self._cancelled = self._cancelled, set()
        cancelled: list[Sequence] = []
        if cancelled_ids:
            cancelled = [s for s in self.waiting if s.request_id in cancelled_ids]
            self.waiting = deque(s for s in self.waiting if s.request_id not in cancelled_ids)
            for seq in self.running:
                if seq.request_id in cancelled_ids:
                    seq.finished = True
                    cancelled.append(seq)
        return self._admit(), cancelled

    def drain(self) -> list[Sequence]:
        """Empty the queue and the batch (the engine is stopping); returns who was in them."""
        leftovers = [*self.waiting, *self.running]
        self.waiting.clear()
        self.clear_running()
        return leftovers

    # ------------------------------------------------------------------ engine thread only
    def start(self, seqs: list[Sequence]) -> None:
        """Prefilled requests join the batch (their cache rows were appended in this order)."""
        self.running.extend(seqs)

    def retire_finished(self) -> list[int] | None:
        """Take finished requests out of the batch. Returns the rows the batch keeps, or None
        when every row stays."""
        keep = [i for i, s in enumerate(self.running) if not s.finished]
        rows: list[int] | None = None
        if len(keep) != len(self.running):
            self.running = [self.running[i] for i in keep]
            rows = keep
        self.cache_tokens = sum(s.tokens for s in self.running)
        return rows

    def clear_running(self) -> None:
        self.running = []
        self.cache_tokens = 0

    def _admit(self) -> list[Sequence]:
        admitted: list[Sequence] = []
        longest = 0
        while self.waiting and len(self.running) + len(admitted) < self.max_batch:
            longest_if_added = max(longest, len(self.waiting[0].prompt_ids))
            if admitted and longest_if_added * (len(admitted) + 1) > self.max_prefill_tokens:
                break
            admitted.append(self.waiting.popleft())
            longest = longest_if_added
        return admitted

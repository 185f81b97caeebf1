"""The first engine: continuous batching on a plain transformers model, in one background thread.

Every step the thread (1) drops cancelled requests, (2) prefills newly admitted requests in one
left-padded forward and appends their rows to the running batch's cache, (3) decodes one token
for every running request, (4) retires finished rows. So requests join and leave at every step
and a cancelled request frees its slot before the next forward.

We own this loop instead of using transformers' ContinuousBatchingManager because, in 5.24, the
manager has one sampling mode and one seed for the whole batch and no stop strings or
min_tokens; the OpenAI protocol needs all of those per request.

On a GPU, decode steps replay CUDA graphs (graphs.py) for batches of up to
LLMSERVE_GRAPH_MAX_BATCH rows whose cache buffers fit in memory; larger ones run eagerly.

Limits (see image/README.md): no paged attention; the cache of the running batch is left-padded,
so a batch mixing very long and very short requests spends memory on padding; models with
sliding-window attention are refused."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from llmserve.detokenize import IncrementalDetokenizer
from llmserve.engine_api import (
    Delta,
    EngineStats,
    EngineStoppedError,
    QueueFullError,
    RequestStream,
    SamplingParams,
)
from llmserve.graphs import GraphedDecoder
from llmserve.kvcache import BatchCache
from llmserve.sampling import pick_next_tokens

log = logging.getLogger("llmserve.engine")

# Longest cache a graphed step covers; longer batches decode eagerly. Bounds the fixed buffers
# (ChatGLM2-6B: 112 MiB per row at 4096 tokens).
GRAPH_MAX_LEN = 4096


@dataclass(eq=False)  # identity: two requests are never 'equal'
class _Sequence:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    emit: Callable[[Delta], None]  # thread-safe delivery of one delta
    detok: IncrementalDetokenizer
    stream: RequestStream | None = None
    generator: torch.Generator | None = None
    generated: int = 0
    last_token: int = 0
    position: int = 0
    finished: bool = False


class ContinuousBatchingEngine:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_model_len: int,
        eos_token_ids: list[int],
        max_batch: int = 32,
        max_queue: int = 256,
        graph_max_batch: int = 0,
        cuda_graphs: bool = False,
        compile_step: bool = False,
        compile_backend: str = "inductor",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.eos_token_ids = list(eos_token_ids)
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.device = next(model.parameters()).device
        # Most (padded) prompt tokens admitted into one prefill forward.
        self.max_prefill_tokens = 16384 if self.device.type == "cuda" else 2048
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._pending: deque[_Sequence] = deque()
        self._running: list[_Sequence] = []
        self._cancelled: set[str] = set()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._batch = BatchCache()
        self._cache_tokens = 0
        self._outbox: list[tuple[_Sequence, Delta]] = []
        # Batches of up to graph_max_batch rows decode from fixed buffers (and CUDA graphs on a
        # GPU); 0 turns that off.
        self._graphed = GraphedDecoder(
            model, max_rows=graph_max_batch, max_len=min(max_model_len + 1, GRAPH_MAX_LEN),
            pad_token_id=self.pad_token_id, use_cuda_graphs=cuda_graphs,
            compile_step=compile_step, compile_backend=compile_backend,
        ) if graph_max_batch else None

    # ------------------------------------------------------------------ public interface
    def start(self) -> None:
        self._warm_up()
        self._thread = threading.Thread(target=self._run, name="llmserve-engine", daemon=True)
        self._thread.start()

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestStream:
        stream = RequestStream(prompt_tokens=len(prompt_ids), _cancel=self.cancel,
                               _loop=asyncio.get_running_loop())
        seq = self._new_sequence(stream.request_id, prompt_ids, params, stream.push)
        seq.stream = stream
        with self._wake:
            if self._stopping or self._thread is None or not self._thread.is_alive():
                raise EngineStoppedError("the engine is not running")
            free_slots = max(0, self.max_batch - len(self._running))
            if len(self._pending) >= self.max_queue + free_slots:
                raise QueueFullError(
                    f"{len(self._pending)} requests are waiting (limit {self.max_queue})")
            self._pending.append(seq)
            self._wake.notify()
        return stream

    def cancel(self, request_id: str) -> None:
        with self._wake:
            self._cancelled.add(request_id)
            self._wake.notify()

    def stats(self) -> EngineStats:
        return EngineStats(queue_depth=len(self._pending), running=len(self._running),
                           cache_tokens=self._cache_tokens,
                           cache_capacity_tokens=self.max_batch * self.max_model_len)

    def in_flight(self) -> int:
        return len(self._pending) + len(self._running)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=60)

    # ------------------------------------------------------------------ the loop
    def _new_sequence(self, request_id: str, prompt_ids: list[int], params: SamplingParams,
                      emit: Callable[[Delta], None]) -> _Sequence:
        generator = None
        if params.seed is not None and params.temperature > 0:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        return _Sequence(request_id=request_id, prompt_ids=list(prompt_ids), params=params,
                         emit=emit, detok=IncrementalDetokenizer(self.tokenizer, params.stop),
                         generator=generator)

    def _warm_up(self) -> None:
        """Two short requests of different lengths through the real prefill (with padding) and
        decode path before /ready says yes: on a GPU the first shapes pay for lazy CUDA init and
        kernel selection, and a real user's first request must not."""
        sink: list[Delta] = []
        params = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
        lengths = [max(2, min(128, self.max_model_len // 4)), 2]
        seqs = [self._new_sequence(f"warmup-{n}", [self.pad_token_id] * n, params, sink.append)
                for n in lengths]
        with torch.inference_mode():
            self._prefill(seqs)
            if self._graphed is not None and self._graphed.use_cuda_graphs:
                self._graphed.precapture(self._batch)
            while self._running:
                self._decode()
        finished = [d.finish_reason for d in sink if d.finish_reason is not None]
        if finished != ["length", "length"]:
            raise RuntimeError(f"warm-up generation did not finish as expected: {sink!r}")

    def _run(self) -> None:
        try:
            with torch.inference_mode():
                while True:
                    with self._wake:
                        while not (self._stopping or self._pending or self._running
                                   or self._cancelled):
                            self._wake.wait()
                        if self._stopping:
                            break
                        cancelled, self._cancelled = self._cancelled, set()
                        admitted = self._admit(cancelled)
                    self._drop_running(cancelled)
                    try:
                        if admitted:
                            self._prefill(admitted)
                        if self._running:
                            self._decode()
                    except Exception as err:  # one bad step must not kill the server
                        log.exception("generation step failed; failing the running batch")
                        stranded = [s for s in admitted if s not in self._running]
                        self._fail_running(f"generation failed: {type(err).__name__}: {err}",
                                           stranded)
                        if _device_is_broken(err):
                            log.error("the GPU is in an unrecoverable state; stopping the engine "
                                      "so the process is restarted")
                            break
        finally:
            with self._wake:
                leftovers = list(self._pending) + self._running
                self._pending.clear()
                self._running = []
            for seq in leftovers:
                seq.emit(Delta("", seq.generated, finish_reason="cancelled"))

    def _admit(self, cancelled: set[str]) -> list[_Sequence]:
        """Called with the lock held."""
        if cancelled:
            kept = [s for s in self._pending if s.request_id not in cancelled]
            for seq in self._pending:
                if seq.request_id in cancelled:
                    seq.emit(Delta("", 0, finish_reason="cancelled"))
            self._pending = deque(kept)
        admitted: list[_Sequence] = []
        longest = 0
        while self._pending and len(self._running) + len(admitted) < self.max_batch:
            longest_if_added = max(longest, len(self._pending[0].prompt_ids))
            if admitted and longest_if_added * (len(admitted) + 1) > self.max_prefill_tokens:
                break
            admitted.append(self._pending.popleft())
            longest = longest_if_added
        return admitted

    def _drop_running(self, cancelled: set[str]) -> None:
        if not cancelled:
            return
        for seq in self._running:
            if seq.request_id in cancelled:
                seq.finished = True
                self._outbox.append((seq, Delta("", seq.generated, finish_reason="cancelled")))
        self._retire_finished()

    def _fail_running(self, message: str, stranded: list[_Sequence]) -> None:
        """Ends every running request, and admitted ones not yet in the batch, with an error."""
        self._outbox = []
        for seq in self._running + stranded:
            seq.emit(Delta("", seq.generated, finish_reason="error", error=message))
        self._running = []
        self._batch = BatchCache()
        self._cache_tokens = 0

    def _prefill(self, seqs: list[_Sequence]) -> None:
        longest = max(len(s.prompt_ids) for s in seqs)
        ids = torch.full((len(seqs), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), longest), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, longest - len(seq.prompt_ids):] = torch.tensor(seq.prompt_ids)
            mask[row, longest - len(seq.prompt_ids):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         cache=cache, use_cache=True, logits_to_keep=1)
        tokens = self._pick(seqs, out.logits[:, -1, :])
        self._batch.append(cache, mask)
        self._running.extend(seqs)
        for seq, token in zip(seqs, tokens, strict=True):
            seq.position = len(seq.prompt_ids)
            self._accept(seq, token)
        self._retire_finished()

    def _decode(self) -> None:
        seqs = self._running
        if self._graphed is not None and self._graphed.fits(len(seqs), self._batch.length + 1):
            logits = self._graphed.decode(self._batch, [s.last_token for s in seqs],
                                          [s.position for s in seqs])
        else:
            ids = torch.tensor([[s.last_token] for s in seqs], device=self.device)
            positions = torch.tensor([[s.position] for s in seqs], device=self.device)
            mask = self._batch.extend_mask()
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             cache=self._batch.cache, use_cache=True)
            logits = out.logits[:, -1, :]
        tokens = self._pick(seqs, logits)
        for seq, token in zip(seqs, tokens, strict=True):
            seq.position += 1
            self._accept(seq, token)
        self._retire_finished()

    def _pick(self, seqs: list[_Sequence], logits: torch.Tensor) -> list[int]:
        return pick_next_tokens(
            logits,
            [s.params for s in seqs],
            [s.generator for s in seqs],
            [s.generated < s.params.min_tokens for s in seqs],
            self.eos_token_ids,
        )

    def _accept(self, seq: _Sequence, token: int) -> None:
        seq.generated += 1
        seq.last_token = token
        is_eos = token in self.eos_token_ids and not seq.params.ignore_eos
        if not is_eos:
            seq.detok.add(token)
        finish: str | None = None
        if is_eos or seq.detok.stopped:
            finish = "stop"
        elif (seq.generated >= seq.params.max_tokens
              or len(seq.prompt_ids) + seq.generated >= self.max_model_len):
            finish = "length"
        text = seq.detok.take_new_text(final=finish is not None)
        seq.finished = finish is not None
        self._outbox.append((seq, Delta(text, seq.generated, finish_reason=finish)))

    def _retire_finished(self) -> None:
        keep = [i for i, s in enumerate(self._running) if not s.finished]
        if len(keep) != len(self._running):
            self._batch.keep_rows(keep)
            self._running = [self._running[i] for i in keep]
        self._cache_tokens = sum(len(s.prompt_ids) + s.generated for s in self._running)
        # Deltas go out only now, so a client that sees its last delta also sees its slot free.
        # One loop callback per step for all deltas, not one per request.
        outbox, self._outbox = self._outbox, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[RequestStream, Delta]]] = {}
        for seq, delta in outbox:
            if seq.stream is None:
                seq.emit(delta)
            else:
                by_loop.setdefault(seq.stream.loop, []).append((seq.stream, delta))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(_deliver, items)


def _device_is_broken(err: Exception) -> bool:
    """A CUDA error (illegal access, ECC, launch failure) poisons the context: every later step
    fails too, so serving on would only turn each request into a 500."""
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(err, accelerator_error):
        return True
    return "CUDA error" in str(err) or "CUBLAS_STATUS" in str(err)


def _deliver(items: list[tuple[RequestStream, Delta]]) -> None:
    for stream, delta in items:
        stream.push_on_loop(delta)

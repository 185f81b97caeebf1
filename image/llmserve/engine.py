"""The engine: continuous batching on a plain transformers model, in one background thread.

Every step the thread asks the scheduler (scheduler.py) which requests leave (cancelled) and
which join the batch within the step's token budget, has the model runner (model_runner.py)
prefill the joiners in one left-padded forward (and the next chunk of a long prompt) and decode
one token for every running request, and lets the output stage (output.py) apply the stop rules
and deliver the text; finished requests leave the batch before their last delta goes out. So
requests join and leave at every step, a long prompt is prefilled a chunk per step while the
others keep decoding, and a cancelled request frees its slot before the next forward. This file
only composes the three and owns the thread.

Every SamplingParams field is honoured per row inside the batch (sampling.py, logits.py);
structured outputs are compiled in `submit` (structured.py) and masked in the batched step.

We own this loop instead of using transformers' ContinuousBatchingManager because, in 5.24, the
manager has one sampling mode and one seed for the whole batch and no stop strings or
min_tokens; the OpenAI protocol needs all of those per request.

On a GPU, decode steps replay CUDA graphs (graphs.py) for batches of up to
LLMSERVE_GRAPH_MAX_BATCH rows whose cache buffers fit in memory; larger ones run eagerly.

Overlapped steps (`overlap_steps`, LLMSERVE_OVERLAP_STEPS; on by default on a GPU): while the
batch only decodes, step N+1 is launched on the device, fed step N's picks where they are (on
the GPU), before the host reads step N's tokens back and does its work on them (stop rules,
detokenizing, delivery), so that work runs while the GPU computes instead of between steps. A
request that finished at step N has had one more token computed by then; it is dropped unread.
The engine falls back to plain steps (reading each step back first) for a step that admits,
prefills or cancels, and while any row needs the host per token (grammar, logprobs, penalties).

The KV cache is one of two (`kv_cache`, LLMSERVE_KV_CACHE): "padded" (kvcache.py: the running
batch's rows left-padded to one length; graphs.py's fixed buffers and CUDA graphs work over it)
or "paged" (block_manager.py, paged_cache.py, paged_runner.py: fixed-size blocks per sequence,
admission and preemption by free blocks, prefix caching; decode runs eagerly). "auto" is padded
until the paged path is measured on a GPU. The padded cache's prefix caching keeps the last
finished row for the next prompt that starts the same way (prompt_reuse.py; on by default on the
CPU, where a chat's every turn would otherwise prefill the whole conversation again).

Limits (see image/README.md): with the padded cache a batch mixing very long and very short
requests spends memory on padding; models with sliding-window attention are refused."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import torch
from transformers import DynamicCache

from llmserve.block_manager import BlockManager
from llmserve.engine_api import (
    Delta,
    EngineStats,
    EngineStoppedError,
    RequestStream,
    SamplingParams,
)
from llmserve.model_runner import LaunchedStep, ModelRunner, device_is_broken
from llmserve.output import OutputStage
from llmserve.paged_cache import PagedKVPool, bytes_per_token, pool_blocks, probe_layer_shapes
from llmserve.paged_runner import PagedModelRunner
from llmserve.prompt_reuse import LastPromptCache
from llmserve.sampling import Choice, picks_on_device
from llmserve.scheduler import Plan, Scheduler
from llmserve.sequence import Sequence
from llmserve.structured import GrammarCompiler

log = logging.getLogger("llmserve.engine")

KV_CACHE_MODES = ("auto", "padded", "paged")


class ContinuousBatchingEngine:
    """The `engine_api.Engine` that `llmserve serve` runs."""

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
        max_step_tokens: int | None = None,
        kv_cache: str = "padded",
        kv_block_size: int = 16,
        kv_cache_tokens: int | None = None,
        gpu_memory_utilization: float = 0.9,
        prefix_caching: bool = True,
        reuse_last_prompt: bool = False,
        overlap_steps: bool = False,
    ) -> None:
        """`prefix_caching`: the paged cache's block-level prefix cache. `reuse_last_prompt`:
        the padded cache's, over the last finished row (prompt_reuse.py)."""
        if kv_cache not in KV_CACHE_MODES:
            raise ValueError(
                f"LLMSERVE_KV_CACHE={kv_cache!r} is not allowed; allowed: "
                + ", ".join(KV_CACHE_MODES)
            )
        # auto is the padded cache for now: its CUDA graphs (and the CPU's fixed buffers) are
        # the measured fast path; the paged one is not measured on a GPU yet.
        self.kv_cache = "paged" if kv_cache == "paged" else "padded"
        self.max_model_len = max_model_len
        self.max_batch = max_batch
        pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.grammars = GrammarCompiler(
            tokenizer, vocab_size=vocab_size, eos_token_ids=list(eos_token_ids)
        )
        runner_args: dict[str, Any] = dict(
            max_model_len=max_model_len,
            pad_token_id=pad_token_id,
            eos_token_ids=eos_token_ids,
            graph_max_batch=graph_max_batch,
            cuda_graphs=cuda_graphs,
            compile_step=compile_step,
            compile_backend=compile_backend,
            grammar_compiler=self.grammars,
            max_step_tokens=max_step_tokens,
        )
        self.blocks: BlockManager | None = None
        if self.kv_cache == "paged":
            shapes, dtype = probe_layer_shapes(model)
            device = next(model.parameters()).device
            num_blocks = pool_blocks(
                per_token_bytes=bytes_per_token(shapes, dtype),
                block_size=kv_block_size,
                device=device,
                max_batch=max_batch,
                max_model_len=max_model_len,
                cache_tokens=kv_cache_tokens,
                gpu_memory_utilization=gpu_memory_utilization,
            )
            pool = PagedKVPool(
                shapes, num_blocks=num_blocks, block_size=kv_block_size, dtype=dtype, device=device
            )
            log.info(
                "paged KV cache: %d blocks of %d tokens (%d tokens, %.2f GiB), prefix caching %s",
                num_blocks,
                kv_block_size,
                num_blocks * kv_block_size,
                pool.nbytes() / 2**30,
                "on" if prefix_caching else "off",
            )
            self.blocks = BlockManager(num_blocks, kv_block_size, prefix_caching=prefix_caching)
            self.runner: ModelRunner = PagedModelRunner(model, pool=pool, **runner_args)
        else:
            self.runner = ModelRunner(model, **runner_args)
        self.prompt_cache: LastPromptCache | None = None
        if reuse_last_prompt and self.blocks is None:
            config = model.config
            self.prompt_cache = LastPromptCache(lambda: DynamicCache(config=config))
        self.scheduler = Scheduler(
            max_batch=max_batch,
            max_queue=max_queue,
            max_step_tokens=self.runner.max_step_tokens,
            blocks=self.blocks,
            reuse=self.prompt_cache,
        )
        self.output = OutputStage(
            tokenizer, eos_token_ids=eos_token_ids, max_model_len=max_model_len
        )
        self._wake = threading.Condition()  # guards the scheduler's queue and _stopping
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.overlap_steps = overlap_steps
        self._overlap = False  # decided in start(), once the runner is final (tensor parallel)
        self._pending: LaunchedStep | None = None  # launched, tokens not read back yet

    # ------------------------------------------------------------------ public interface
    def start(self) -> None:
        # Only the padded runner's own steps: the paged runner decodes its own way, and tensor
        # parallel's mirror (tp_mirror.py) replays plain calls on the other ranks. Decided
        # before the warm-up (the runner is final by now), so the warm-up runs the launched
        # path too and a user's first request is not its first use.
        self._overlap = self.overlap_steps and type(self.runner) is ModelRunner
        if self.prompt_cache is not None and type(self.runner) is not ModelRunner:
            # tensor parallel's mirror replays plain calls: the other ranks hold no seed
            log.info("prefix caching is off: the %s runner has none", type(self.runner).__name__)
            self.prompt_cache = self.scheduler.reuse = None
        if self.overlap_steps and not self._overlap:
            log.info("overlapped steps are off: the %s runner has none", type(self.runner).__name__)
        self._warm_up()
        self._thread = threading.Thread(target=self._run, name="llmserve-engine", daemon=True)
        self._thread.start()

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestStream:
        """Also raises StructuredOutputError (a ValueError) for a structured output that cannot
        be compiled. The first structured request converts the tokenizer for the grammar
        library (about a second for a 49k vocabulary), later ones only compile their schema."""
        blocks = self.blocks
        if blocks is not None and blocks.blocks_for(len(prompt_ids) + 1) > blocks.num_blocks:
            raise ValueError(  # the HTTP layer refuses prompts over the context long before
                f"a prompt of {len(prompt_ids)} tokens does not fit the paged KV cache; allowed: "
                f"at most {blocks.num_blocks * blocks.block_size - 1} tokens"
            )
        stream = RequestStream(
            prompt_tokens=len(prompt_ids), _cancel=self.cancel, _loop=asyncio.get_running_loop()
        )
        seq = self._new_sequence(stream.request_id, prompt_ids, params, stream=stream)
        with self._wake:
            if self._stopping or self._thread is None or not self._thread.is_alive():
                raise EngineStoppedError("the engine is not running")
            self.scheduler.add(seq)
            self._wake.notify()
        return stream

    def cancel(self, request_id: str) -> None:
        with self._wake:
            self.scheduler.cancel(request_id)
            self._wake.notify()

    def stats(self) -> EngineStats:
        blocks, reuse = self.blocks, self.prompt_cache
        queries = hits = 0
        if blocks is not None:
            queries, hits = blocks.queried_tokens, blocks.hit_tokens
        elif reuse is not None:
            queries, hits = reuse.queried, reuse.hits
        return EngineStats(
            queue_depth=len(self.scheduler.waiting),
            running=len(self.scheduler.running) + (self.scheduler.prefilling is not None),
            cache_tokens=self.scheduler.cache_tokens,
            cache_capacity_tokens=(
                blocks.num_blocks * blocks.block_size
                if blocks is not None
                else self.max_batch * self.max_model_len
            ),
            prefix_cache_queries=queries,
            prefix_cache_hits=hits,
            preemptions=self.scheduler.preemptions,
        )

    def in_flight(self) -> int:
        scheduler = self.scheduler
        return len(scheduler.waiting) + len(scheduler.running) + (scheduler.prefilling is not None)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=60)

    # ------------------------------------------------------------------ the loop
    def _new_sequence(
        self,
        request_id: str,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        stream: RequestStream | None = None,
        sink: Callable[[Delta], None] | None = None,
    ) -> Sequence:
        grammar = self.grammars.compile(params.structured) if params.structured else None
        return Sequence(
            request_id=request_id,
            prompt_ids=list(prompt_ids),
            params=params,
            detok=self.output.detokenizer(params.stop),
            stream=stream,
            sink=sink,
            generator=self.runner.generator(params),
            grammar=grammar,
            limit=max(0, min(params.max_tokens, self.max_model_len - len(prompt_ids))),
            overlappable=picks_on_device(params, grammar),
        )

    def _warm_up(self) -> None:
        """Two short requests of different lengths through the real prefill (with padding) and
        decode path before /ready says yes: on a GPU the first shapes pay for lazy CUDA init and
        kernel selection, and a real user's first request must not."""
        if self.blocks is not None:
            self._warm_up_paged(self.blocks)
            return
        sink: list[Delta] = []
        params, lengths = self._warm_up_requests()
        pad = self.runner.pad_token_id
        seqs = [
            self._new_sequence(f"warmup-{n}", [pad] * n, params, sink=sink.append) for n in lengths
        ]
        with torch.inference_mode():
            self._prefill(seqs)
            self.runner.precapture()
            self._prefill_chunk(
                self._new_sequence("warmup-chunk", [pad] * 2, params, sink=sink.append), 2
            )
            while self.scheduler.running:
                self._decode()
        finished = [d.finish_reason for d in sink if d.finish_reason is not None]
        if finished != ["length"] * 3:
            raise RuntimeError(f"warm-up generation did not finish as expected: {sink!r}")
        if self.prompt_cache is not None:  # /metrics counts only users' requests
            self.prompt_cache.clear()
            self.prompt_cache.reset_counters()

    def _warm_up_requests(self) -> tuple[SamplingParams, list[int]]:
        """The warm-up requests' parameters and prompt lengths. On a GPU a 128-token prompt and
        8 tokens each (kernel selection for prefill shapes, every graph bucket the warm-up batch
        passes through); on the CPU 16 and 3, since there is nothing to select and a 128-token
        padded prefill of two rows was half of a second start's warm-up (SmolLM2-135M: ~0.5 s
        of ~1 s)."""
        on_gpu = self.runner.device.type == "cuda"
        params = SamplingParams(max_tokens=8 if on_gpu else 3, temperature=0.0, ignore_eos=True)
        longest = 128 if on_gpu else 16
        return params, [max(2, min(longest, self.max_model_len // 4)), 2]

    def _warm_up_paged(self, blocks: BlockManager) -> None:
        """The same requests through the scheduler's real steps (blocks, chunk, decode); then the
        prefix cache and its counters are emptied, so /metrics counts only users' requests."""
        sink: list[Delta] = []
        params, lengths = self._warm_up_requests()
        pad = self.runner.pad_token_id
        for n, name in ((lengths[0], "long"), (lengths[1], "short")):
            self.scheduler.add(
                self._new_sequence(f"warmup-{name}", [pad] * n, params, sink=sink.append)
            )
        with torch.inference_mode():
            while self.scheduler.has_work():
                self._step(self.scheduler.schedule())
        finished = [d.finish_reason for d in sink if d.finish_reason is not None]
        if finished != ["length"] * 2:
            raise RuntimeError(f"warm-up generation did not finish as expected: {sink!r}")
        blocks.clear_prefix_cache()
        blocks.queried_tokens = blocks.hit_tokens = 0

    def _run(self) -> None:
        try:
            with torch.inference_mode():
                while True:
                    with self._wake:
                        while not (self._stopping or self.scheduler.has_work()):
                            self._wake.wait()
                        if self._stopping:
                            break
                        plan = self.scheduler.schedule()
                    try:
                        # Inside the try: the launched step's error (a CUDA fault surfaces
                        # when it is read back) must fail the batch and the plan's admitted
                        # requests, which are out of the queue and not yet in the batch.
                        if self._pending is not None and (
                            plan.cancelled or plan.admitted or plan.chunk is not None
                        ):
                            self._settle()  # the batch changes: read the launched step first
                        if plan.cancelled:
                            for seq in plan.cancelled:
                                self.output.finish(seq, "cancelled")
                            self._retire_finished()
                        self._step(plan)
                    except Exception as err:  # one bad step must not kill the server
                        log.exception("generation step failed; failing the running batch")
                        stranded = [
                            s
                            for s in [*plan.admitted, *([plan.chunk] if plan.chunk else [])]
                            if s not in self.scheduler.running
                        ]
                        self._fail_running(
                            f"generation failed: {type(err).__name__}: {err}", stranded
                        )
                        if device_is_broken(err):
                            log.error(
                                "the GPU is in an unrecoverable state; stopping the engine "
                                "so the process is restarted"
                            )
                            break
        finally:
            if self._pending is not None:
                try:
                    self._settle()
                except Exception:  # a broken device: its requests end as cancelled below
                    log.exception("reading the last launched step back failed")
                    self._pending = None
            with self._wake:
                leftovers = self.scheduler.drain()
            self.output.discard()
            for seq in leftovers:
                self.output.finish(seq, "cancelled")
            self.output.flush()

    def _step(self, plan: Plan) -> None:
        if plan.admitted:
            self._prefill(plan.admitted)
        if plan.chunk is not None:
            self._prefill_chunk(plan.chunk, plan.chunk_tokens)
        if self.scheduler.running:
            self._decode()

    def _prefill(self, seqs: list[Sequence]) -> None:
        choices = self.runner.prefill(seqs)
        self.scheduler.start(seqs)
        self.output.accept(seqs, choices)
        self._retire_finished()

    def _prefill_chunk(self, seq: Sequence, tokens: int) -> None:
        reuse = self.prompt_cache
        if reuse is not None and seq.chunk_cache is None and seq.prefilled:
            # the scheduler chose to reuse the last row's prefix: copy it now, inside the step
            seq.chunk_cache = reuse.seed_for(seq.prompt_ids, seq.prefilled)
            if seq.chunk_cache is None:
                seq.prefilled = 0
        choice = self.runner.prefill_chunk(seq, tokens)
        if choice is None:
            return
        self.scheduler.start([seq])
        self.output.accept([seq], [choice])
        self._retire_finished()

    def _decode(self) -> None:
        seqs = self.scheduler.running
        if self._overlap and all(s.overlappable for s in seqs):
            launched = self.runner.launch_decode(seqs, follows=self._pending is not None)
            self._settle()  # the previous step's host work, while this one runs
            for seq in launched.seqs:
                seq.unread_tokens += 1
            self._pending = launched
            if not self.scheduler.running:  # every row finished: nothing will follow it
                self._settle()
            return
        if self._pending is not None:
            self._settle()
            seqs = self.scheduler.running
            if not seqs:
                return
        choices = self.runner.decode(seqs)
        self.output.accept(seqs, choices)
        self._retire_finished()

    def _settle(self) -> None:
        """Read the launched step's tokens back and do their host work; rows that finished
        before it (their extra token) are skipped."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        tokens = pending.tokens()
        live: list[Sequence] = []
        choices: list[Choice] = []
        for seq, token in zip(pending.seqs, tokens, strict=True):
            seq.unread_tokens -= 1
            if not seq.finished:
                live.append(seq)
                choices.append(Choice(token))
        if live:
            self.output.accept(live, choices)
        self._retire_finished()

    def _retire_finished(self) -> None:
        """Finished requests leave the batch (and its cache rows), then their deltas go out.
        With prefix caching on the padded cache, the last of them to leave keeps its row."""
        if self.prompt_cache is not None:
            finished = [(i, s) for i, s in enumerate(self.scheduler.running) if s.finished]
            if finished:
                row, seq = finished[-1]
                self.prompt_cache.remember(seq.context_ids, self.runner.row_cache(row))
        rows = self.scheduler.retire_finished()
        if rows is not None:
            self.runner.keep_rows(rows)
        self.output.flush()

    def _fail_running(self, message: str, stranded: list[Sequence]) -> None:
        """Ends every running request, and admitted ones not yet in the batch, with an error."""
        self._pending = None
        self.output.discard()
        for seq in self.scheduler.running + stranded:
            self.output.finish(seq, "error", message)
        for seq in stranded:  # admitted, so holding blocks, but not in the batch yet
            self.scheduler.release(seq)
        self.scheduler.clear_running()
        self.runner.reset()
        if self.prompt_cache is not None:  # taken from a batch now in an unknown state
            self.prompt_cache.clear()
        self.output.flush()

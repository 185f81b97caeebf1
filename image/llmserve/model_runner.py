"""Runs the model for the scheduler's batch: the prefill of newly admitted requests (whole
prompts in one left-padded forward, or one chunk of a long prompt), one decode step for every
running request, and the choice of each row's next token (sampling.py).

It owns the running batch's key/value cache (kvcache.BatchCache), whose rows are the
scheduler's running requests in order: prefill appends rows, keep_rows drops the finished ones.
A prompt prefilled in chunks keeps its own cache until its last chunk, then joins the batch.
Decode steps run from graphs.py's fixed buffers (replayed as CUDA graphs on a GPU, the one-row
step optionally torch.compile'd) while the batch fits them, and eagerly otherwise. It knows
nothing of queues, stop rules or clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from llmserve.engine_api import SamplingParams, TokenLogprob
from llmserve.graphs import GraphedDecoder
from llmserve.host_to_device import to_device
from llmserve.kvcache import BatchCache
from llmserve.logits import LogitsContext
from llmserve.sampling import Choice, pick_next_tokens, pick_token_tensor
from llmserve.sequence import Sequence
from llmserve.structured import GrammarCompiler

# A step's token budget (decode rows + prefill tokens). vLLM's default for chunked prefill is
# 2048-8192 by GPU; 4096 keeps a 6B model's step under ~0.1 s on an H200 while a long prompt
# is prefilled, and still admits 32 prompts of 128 tokens in one step. On a CPU steps are slower,
# so chunks are smaller.
DEFAULT_STEP_TOKENS_CUDA = 4096
DEFAULT_STEP_TOKENS_CPU = 512

# Longest cache a graphed step covers; longer batches decode eagerly. Bounds the fixed buffers
# (ChatGLM2-6B: 112 MiB per row at 4096 tokens).
GRAPH_MAX_LEN = 4096


@dataclass
class LaunchedStep:
    """A decode step queued on the device whose tokens are not read back yet (engine.py's
    overlapped steps): `tokens()` waits for them. `seqs` are the batch's rows as they were when
    it was launched."""

    seqs: list[Sequence]
    host: torch.Tensor  # its picks land here (pinned on a GPU)
    ready: Any  # a CUDA event recorded after the copy, or None on the CPU

    def tokens(self) -> list[int]:
        if self.ready is not None:
            self.ready.synchronize()
        return self.host.tolist()


class ModelRunner:
    def __init__(
        self,
        model: Any,
        *,
        max_model_len: int,
        pad_token_id: int,
        eos_token_ids: list[int],
        graph_max_batch: int = 0,
        cuda_graphs: bool = False,
        compile_step: bool = False,
        compile_backend: str = "inductor",
        grammar_compiler: GrammarCompiler | None = None,
        max_step_tokens: int | None = None,
    ) -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.eos_token_ids = list(eos_token_ids)  # masked out until a row has min_tokens
        self.device = next(model.parameters()).device
        # Tokens one step computes (decode rows + prefill tokens, padding included): the
        # scheduler's budget. Longer prompts are prefilled in chunks across steps.
        self.max_step_tokens = max_step_tokens or (
            DEFAULT_STEP_TOKENS_CUDA if self.device.type == "cuda" else DEFAULT_STEP_TOKENS_CPU
        )
        self.logits_context = LogitsContext(self.eos_token_ids, grammar_compiler)
        self.batch = BatchCache()
        # Batches of up to graph_max_batch rows decode from fixed buffers (and CUDA graphs on a
        # GPU); 0 turns that off.
        self.graphed = (
            GraphedDecoder(
                model,
                max_rows=graph_max_batch,
                max_len=min(max_model_len + 1, GRAPH_MAX_LEN),
                pad_token_id=pad_token_id,
                use_cuda_graphs=cuda_graphs,
                compile_step=compile_step,
                compile_backend=compile_backend,
            )
            if graph_max_batch
            else None
        )
        # The last launched step's picks on the device, row by row: the next launched step's
        # input tokens (None after a step read back on the host).
        self._device_tokens: torch.Tensor | None = None
        self._pick_host: list[torch.Tensor] = []  # two, used in turn (launch_decode)
        self._launches = 0

    def generator(self, params: SamplingParams) -> torch.Generator | None:
        """A request's own random generator, on the model's device, when it is seeded and
        sampled: its text then does not depend on what else shares the batch."""
        if params.seed is None or params.temperature <= 0:
            return None
        return torch.Generator(device=self.device).manual_seed(params.seed)

    def prefill(self, seqs: list[Sequence]) -> list[Choice]:
        """One left-padded forward over whole prompts; appends their rows to the batch's cache
        and returns each one's first token."""
        self._device_tokens = None  # rows join: the last launched picks no longer match them
        longest = max(len(s.prompt_ids) for s in seqs)
        ids = torch.full((len(seqs), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), longest), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, longest - len(seq.prompt_ids) :] = torch.tensor(seq.prompt_ids)
            mask[row, longest - len(seq.prompt_ids) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        choices = self._pick(seqs, out.logits[:, -1, :])
        self.batch.append(cache, mask)
        for seq in seqs:
            seq.position = len(seq.prompt_ids)
            seq.prefilled = len(seq.prompt_ids)
        return choices

    def prefill_chunk(self, seq: Sequence, tokens: int) -> Choice | None:
        """The next `tokens` prompt tokens of `seq` into its own cache. After the last chunk its
        cache joins the batch (as the last row) and its first token is returned; before, None.
        Prompt logprobs, when asked for, are taken from every chunk's logits."""
        self._device_tokens = None  # its row may join: the last launched picks would not match
        start = seq.prefilled
        end = min(len(seq.prompt_ids), start + tokens)
        if seq.chunk_cache is None:
            seq.chunk_cache = DynamicCache(config=self.model.config)
        want_prompt = seq.params.prompt_logprobs is not None
        out = self.model(
            input_ids=torch.tensor([seq.prompt_ids[start:end]], device=self.device),
            attention_mask=torch.ones((1, end), dtype=torch.long, device=self.device),
            position_ids=torch.arange(start, end, device=self.device).unsqueeze(0),
            cache=seq.chunk_cache,
            use_cache=True,
            logits_to_keep=0 if want_prompt else 1,
        )
        if want_prompt:
            self._prompt_logprobs(seq, out.logits[0], start, end)
        seq.prefilled = end
        if end < len(seq.prompt_ids):
            return None
        choice = self._pick([seq], out.logits[:, -1, :])[0]
        self.batch.append(
            seq.chunk_cache, torch.ones((1, end), dtype=torch.long, device=self.device)
        )
        seq.chunk_cache = None
        seq.position = end
        return choice

    def _prompt_logprobs(self, seq: Sequence, logits: torch.Tensor, start: int, end: int) -> None:
        """Logits at prompt positions start..end-1 predict tokens start+1..end: their logprobs
        (after the request's temperature, as for generated tokens) and the top k."""
        if seq.prompt_logprobs is None:
            seq.prompt_logprobs = [None]
        targets = seq.prompt_ids[start + 1 : end + 1]
        if not targets:
            return
        params = seq.params
        scaled = logits[: len(targets)].float()
        if params.temperature >= 1e-5 and params.temperature != 1.0:
            scaled = scaled / params.temperature
        logprobs = torch.log_softmax(scaled, dim=-1)
        target = torch.tensor(targets, device=logprobs.device).unsqueeze(1)
        chosen = logprobs.gather(1, target.clamp(max=logprobs.shape[-1] - 1)).squeeze(1).tolist()
        k = min(params.prompt_logprobs or 0, logprobs.shape[-1])
        top_ids: list[list[int]] = [[] for _ in targets]
        top_values: list[list[float]] = [[] for _ in targets]
        if k:
            top = logprobs.topk(k, dim=-1)
            top_ids, top_values = top.indices.tolist(), top.values.tolist()
        for n, token in enumerate(targets):
            value = chosen[n] if token < logprobs.shape[-1] else float("-inf")
            seq.prompt_logprobs.append(
                TokenLogprob(token, value, tuple(zip(top_ids[n], top_values[n], strict=True)))
            )

    def decode(self, seqs: list[Sequence]) -> list[Choice]:
        """One step for every row of the batch (`seqs` are its rows in order); returns each
        row's next token."""
        logits = self._decode_logits(seqs, [s.last_token for s in seqs])
        self._device_tokens = None
        tokens = self._pick(seqs, logits)
        for seq in seqs:
            seq.position += 1
        return tokens

    def launch_decode(self, seqs: list[Sequence], follows: bool) -> LaunchedStep:
        """The same step, queued without waiting for its tokens (rows must ask for nothing
        the host decides per token: sampling.picks_on_device). `follows`: the rows' last
        tokens are the previous launched step's picks, still on the device (their host copy
        is not read yet), else their `last_token`."""
        tokens: list[int] | torch.Tensor
        if follows:
            assert self._device_tokens is not None and len(self._device_tokens) == len(seqs)
            tokens = self._device_tokens
        else:
            tokens = [s.last_token for s in seqs]
        logits = self._decode_logits(seqs, tokens)
        choice = pick_token_tensor(logits, seqs, self.logits_context)
        self._device_tokens = choice
        buffers = self._pick_host
        if not buffers or len(buffers[0]) < len(seqs):  # grown by doubling, not for every row
            size = max(len(seqs), 2 * len(buffers[0]) if buffers else 0)
            pinned = self.device.type == "cuda"
            self._pick_host = buffers = [
                torch.zeros(size, dtype=torch.long, pin_memory=pinned) for _ in range(2)
            ]
        # Two host buffers in turn: the step launched before this one may not be read yet.
        host = buffers[self._launches % 2][: len(seqs)]
        self._launches += 1
        ready = None
        if self.device.type == "cuda":
            host.copy_(choice, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
        else:
            host.copy_(choice)
        for seq in seqs:
            seq.position += 1
        return LaunchedStep(list(seqs), host, ready)

    def _decode_logits(
        self, seqs: list[Sequence], tokens: list[int] | torch.Tensor
    ) -> torch.Tensor:
        if self.graphed is not None and self.graphed.fits(len(seqs), self.batch.length + 1):
            return self.graphed.decode(self.batch, tokens, [s.position for s in seqs])
        # to_device, not torch.tensor(..., device=): that one would wait for a launched step
        ids = (
            tokens.view(-1, 1)
            if isinstance(tokens, torch.Tensor)
            else to_device(tokens, self.device, torch.long).view(-1, 1)
        )
        positions = to_device([s.position for s in seqs], self.device, torch.long).view(-1, 1)
        mask = self.batch.extend_mask()
        self.batch.changed()  # the forward below grows the layers into new tensors
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=self.batch.cache,
            use_cache=True,
        )
        return out.logits[:, -1, :]

    def row_cache(self, row: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Copies of a batch row's keys and values (for prompt_reuse.py), before it leaves."""
        return self.batch.row(row)

    def keep_rows(self, rows: list[int]) -> None:
        """Drop every other row from the batch's cache (the scheduler retired them), and from
        the launched step's picks that the next step reads."""
        index = self.batch.keep_rows(rows)
        if self._device_tokens is not None:
            self._device_tokens = None if index is None else self._device_tokens[index]

    def reset(self) -> None:
        """Forget the batch's cache (after a failed step: its state is unknown)."""
        self.batch = BatchCache()
        self._device_tokens = None

    def precapture(self) -> None:
        """Capture every CUDA graph bucket now, using the batch in the cache for the buffers'
        shapes; only while nothing is served (the engine's warm-up)."""
        if self.graphed is not None and self.graphed.use_cuda_graphs:
            self.graphed.precapture(self.batch)

    def _pick(self, seqs: list[Sequence], logits: torch.Tensor) -> list[Choice]:
        return pick_next_tokens(logits, seqs, self.logits_context)


def device_is_broken(err: Exception) -> bool:
    """A CUDA error (illegal access, ECC, launch failure) poisons the context: every later step
    fails too, so serving on would only turn each request into a 500."""
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(err, accelerator_error):
        return True
    return "CUDA error" in str(err) or "CUBLAS_STATUS" in str(err)

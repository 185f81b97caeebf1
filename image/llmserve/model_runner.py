"""Runs the model for the scheduler's batch: the prefill of newly admitted requests, one decode
step for every running request, and the choice of each row's next token.

It owns the running batch's key/value cache (kvcache.BatchCache), whose rows are the
scheduler's running requests in order: prefill appends rows, keep_rows drops the finished ones.
Decode steps run from graphs.py's fixed buffers (replayed as CUDA graphs on a GPU, the one-row
step optionally torch.compile'd) while the batch fits them, and eagerly otherwise. It knows
nothing of queues, stop rules or clients."""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache

from llmserve.engine_api import SamplingParams
from llmserve.graphs import GraphedDecoder
from llmserve.kvcache import BatchCache
from llmserve.sampling import pick_next_tokens
from llmserve.sequence import Sequence

# Longest cache a graphed step covers; longer batches decode eagerly. Bounds the fixed buffers
# (ChatGLM2-6B: 112 MiB per row at 4096 tokens).
GRAPH_MAX_LEN = 4096


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
    ) -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.eos_token_ids = list(eos_token_ids)  # masked out until a row has min_tokens
        self.device = next(model.parameters()).device
        # Most (padded) prompt tokens one prefill forward takes: the scheduler's admission bound.
        self.max_prefill_tokens = 16384 if self.device.type == "cuda" else 2048
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

    def generator(self, params: SamplingParams) -> torch.Generator | None:
        """A request's own random generator, on the model's device, when it is seeded and
        sampled: its text then does not depend on what else shares the batch."""
        if params.seed is None or params.temperature <= 0:
            return None
        return torch.Generator(device=self.device).manual_seed(params.seed)

    def prefill(self, seqs: list[Sequence]) -> list[int]:
        """One left-padded forward over the prompts; appends their rows to the batch's cache and
        returns each one's first token."""
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
        tokens = self._pick(seqs, out.logits[:, -1, :])
        self.batch.append(cache, mask)
        for seq in seqs:
            seq.position = len(seq.prompt_ids)
        return tokens

    def decode(self, seqs: list[Sequence]) -> list[int]:
        """One step for every row of the batch (`seqs` are its rows in order); returns each
        row's next token."""
        if self.graphed is not None and self.graphed.fits(len(seqs), self.batch.length + 1):
            logits = self.graphed.decode(
                self.batch, [s.last_token for s in seqs], [s.position for s in seqs]
            )
        else:
            ids = torch.tensor([[s.last_token] for s in seqs], device=self.device)
            positions = torch.tensor([[s.position] for s in seqs], device=self.device)
            mask = self.batch.extend_mask()
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                cache=self.batch.cache,
                use_cache=True,
            )
            logits = out.logits[:, -1, :]
        tokens = self._pick(seqs, logits)
        for seq in seqs:
            seq.position += 1
        return tokens

    def keep_rows(self, rows: list[int]) -> None:
        """Drop every other row from the batch's cache (the scheduler retired them)."""
        self.batch.keep_rows(rows)

    def reset(self) -> None:
        """Forget the batch's cache (after a failed step: its state is unknown)."""
        self.batch = BatchCache()

    def precapture(self) -> None:
        """Capture every CUDA graph bucket now, using the batch in the cache for the buffers'
        shapes; only while nothing is served (the engine's warm-up)."""
        if self.graphed is not None and self.graphed.use_cuda_graphs:
            self.graphed.precapture(self.batch)

    def _pick(self, seqs: list[Sequence], logits: torch.Tensor) -> list[int]:
        return pick_next_tokens(
            logits,
            [s.params for s in seqs],
            [s.generator for s in seqs],
            [s.generated < s.params.min_tokens for s in seqs],
            self.eos_token_ids,
        )


def device_is_broken(err: Exception) -> bool:
    """A CUDA error (illegal access, ECC, launch failure) poisons the context: every later step
    fails too, so serving on would only turn each request into a 500."""
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(err, accelerator_error):
        return True
    return "CUDA error" in str(err) or "CUBLAS_STATUS" in str(err)

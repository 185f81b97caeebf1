"""The model runner over the paged KV cache (LLMSERVE_KV_CACHE=paged).

Same interface as model_runner.ModelRunner, so the engine drives both alike, but no batch-wide
cache: every sequence's keys/values live in the blocks of its block table (the scheduler's block
manager hands them out before a step), so requests join and leave without any copy, and a
preempted one simply loses its blocks. A prefill starts after the sequence's cached prefix
(`seq.prefilled` tokens, reused blocks of the prefix cache) and covers the rest of its context:
the prompt, and after a preemption the tokens it had generated too (recompute). Decode steps run
eagerly (graphs.py's CUDA graphs are over the padded cache)."""

from __future__ import annotations

from typing import Any

import torch

from llmserve.model_runner import ModelRunner
from llmserve.paged_cache import PagedKVPool, PagedStepCache, StepLayout, plan_step
from llmserve.sampling import Choice
from llmserve.sequence import Sequence


class PagedModelRunner(ModelRunner):
    def __init__(self, model: Any, *, pool: PagedKVPool, **kwargs: Any) -> None:
        kwargs["graph_max_batch"] = 0
        super().__init__(model, **kwargs)
        self.pool = pool

    def prefill(self, seqs: list[Sequence]) -> list[Choice]:
        """Whole contexts (past their cached prefixes) in one forward; each one's next token."""
        contexts = [s.context_ids for s in seqs]
        starts = [s.prefilled for s in seqs]
        logits = self._forward(seqs, [c[s:] for c, s in zip(contexts, starts, strict=True)])
        choices = self._pick(seqs, logits[:, -1, :])
        for seq, context in zip(seqs, contexts, strict=True):
            seq.position = seq.prefilled = len(context)
        return choices

    def prefill_chunk(self, seq: Sequence, tokens: int) -> Choice | None:
        """The next `tokens` of the context into its blocks; after the last chunk its next
        token (before, None). Prompt logprobs come from every chunk of a first prefill (not a
        recompute after preemption: the client has them already)."""
        context = seq.context_ids
        start = seq.prefilled
        end = min(len(context), start + tokens)
        want_prompt = seq.params.prompt_logprobs is not None and seq.generated == 0
        logits = self._forward([seq], [context[start:end]], keep_all=want_prompt)
        if want_prompt:
            self._prompt_logprobs(seq, logits[0], start, end)
        seq.prefilled = end
        if end < len(context):
            return None
        seq.position = end
        return self._pick([seq], logits[:, -1, :])[0]

    def decode(self, seqs: list[Sequence]) -> list[Choice]:
        logits = self._forward(
            seqs, [[s.last_token] for s in seqs], starts=[s.position for s in seqs]
        )
        choices = self._pick(seqs, logits[:, -1, :])
        for seq in seqs:
            seq.position += 1
        return choices

    def keep_rows(self, rows: list[int]) -> None:
        """Nothing to do: a retired sequence's blocks go back to the pool in the scheduler."""

    def reset(self) -> None:
        """Nothing to do: block tables live in the sequences, and the scheduler frees them."""

    def precapture(self) -> None:
        """No CUDA graphs over the paged cache (yet)."""

    def _forward(
        self,
        seqs: list[Sequence],
        new_tokens: list[list[int]],
        *,
        starts: list[int] | None = None,
        keep_all: bool = False,
    ) -> torch.Tensor:
        """One forward writing `new_tokens[r]` after `starts[r]` (default: seq.prefilled)
        tokens of row r; returns logits [rows, 1 or query length, vocab]."""
        starts = starts if starts is not None else [s.prefilled for s in seqs]
        counts = [len(t) for t in new_tokens]
        layout: StepLayout = plan_step(
            [s.block_table for s in seqs], starts, counts, self.pool.block_size, self.device
        )
        query_len = max(counts)
        ids = torch.full((len(seqs), query_len), self.pad_token_id, dtype=torch.long)
        for row, tokens in enumerate(new_tokens):
            ids[row, query_len - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=layout.mask,
            position_ids=layout.positions,
            cache=PagedStepCache(self.pool, layout),
            use_cache=True,
            logits_to_keep=0 if keep_all else 1,
        )
        return out.logits

"""Logit processors for a batch whose rows each have their own settings, vectorized across the
rows that use each one and skipped when no row does:

- logit_bias: added to the named tokens' logits (ids outside the vocabulary are ignored);
- repetition_penalty (HF's and vLLM's): a token already in the prompt or the output has its
  logit divided by the penalty when positive, multiplied when negative;
- presence_penalty and frequency_penalty (OpenAI's): logit -= frequency * count + presence *
  (count > 0), counting the tokens generated so far;
- min_tokens: EOS and the row's stop_token_ids are masked until that many tokens exist;
- structured outputs: tokens the row's grammar forbids are masked (structured.py), and within
  the last CLOSING_MARGIN tokens of its budget the row is steered to close its JSON value.

Order as vLLM's sampler: bias, penalties, masks; temperature comes after (sampling.py)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from llmserve.host_to_device import to_device
from llmserve.structured import (
    Grammar,
    GrammarCompiler,
    apply_bitmask,
    fill_bitmasks,
    new_bitmask,
)

if TYPE_CHECKING:
    from llmserve.sampling import Row

# A constrained row this close to its token budget (max_tokens or the context) is steered to
# finish its JSON value. Why: a model that keeps writing (a random one inside a string, above
# all) would otherwise be cut off mid-value, and the client would get invalid JSON.
CLOSING_MARGIN = 32
# Far larger than any logit gap, so the steered token always wins the row's draw.
_STEER = 1.0e4


@dataclass
class GrammarMasks:
    """The step's grammar masks: batch rows `rows` got bitmask rows 0, 1, ... (host int32)."""

    rows: list[int]
    bitmask: torch.Tensor


class LogitsContext:
    """What the processors need beyond the rows: the model's EOS ids, and the grammar compiler
    (its thread pool for masks, and the token bytes the closing steer reads)."""

    def __init__(
        self, eos_token_ids: Sequence[int] = (), compiler: GrammarCompiler | None = None
    ) -> None:
        self.eos_token_ids = list(eos_token_ids)
        self.compiler = compiler

    def steer_to_close(
        self, logits: torch.Tensor, rows: Sequence[Row], masks: GrammarMasks | None
    ) -> None:
        """A row with a grammar and at most CLOSING_MARGIN tokens left gets, among the tokens
        its grammar allows now, the one that leaves its JSON value closest to closed (fewest
        open strings and containers, then no new comma or colon, then the shortest), or EOS
        once the grammar accepts. Where the grammar allows none of those (a key name, an enum
        value, a pattern), the model's own choice among the allowed tokens stands."""
        if masks is None or self.compiler is None:
            return
        for k, i in enumerate(masks.rows):
            grammar = rows[i].grammar
            if grammar is None or rows[i].remaining > CLOSING_MARGIN:
                continue
            token = self._closest_to_closed(grammar, masks.bitmask[k])
            if token is not None:
                logits[i, token] += _STEER

    def _closest_to_closed(self, grammar: Grammar, bitmask: torch.Tensor) -> int | None:
        assert self.compiler is not None
        words = bitmask.tolist()

        def allowed(token: int) -> bool:
            return token >> 5 < len(words) and (words[token >> 5] >> (token & 31)) & 1 == 1

        for eos in self.eos_token_ids:
            if allowed(eos):
                return eos
        best: tuple[int, int, int] | None = None
        best_token: int | None = None
        for token, raw in zip(*self.compiler.structural_tokens(), strict=True):
            if not allowed(token):
                continue
            shape = grammar.shape.copy()
            more = shape.feed(raw)
            key = (shape.depth, more, len(raw))
            if best is None or key < best:
                best, best_token = key, token
        return best_token


def process_logits(
    logits: torch.Tensor, rows: Sequence[Row], ctx: LogitsContext
) -> GrammarMasks | None:
    """Apply every row's processors to logits [rows, vocab] (float32) in place; returns the
    grammar masks it applied, if any row has a grammar."""
    biased: list[int] = []
    repeated: list[int] = []
    penalized: list[int] = []
    blocked: list[int] = []
    constrained: list[int] = []
    eos = ctx.eos_token_ids
    for i, r in enumerate(rows):  # one pass: a plain row costs a few attribute reads
        p = r.params
        if p.logit_bias:
            biased.append(i)
        if p.repetition_penalty != 1.0:
            repeated.append(i)
        if (p.presence_penalty or p.frequency_penalty) and r.output_ids:
            penalized.append(i)
        # unread_tokens: picked by a launched step not read back yet (engine.py's overlapped
        # steps), so not in output_ids, but generated all the same
        if (
            p.min_tokens
            and len(r.output_ids) + r.unread_tokens < p.min_tokens
            and (eos or p.stop_token_ids)
        ):
            blocked.append(i)
        if r.grammar is not None:
            constrained.append(i)
    if biased:
        _logit_bias(logits, rows, biased)
    if repeated:
        _repetition_penalty(logits, rows, repeated)
    if penalized:
        _presence_frequency(logits, rows, penalized)
    if blocked:
        _block_stops(logits, rows, blocked, eos)
    if constrained and ctx.compiler is not None:
        bitmask = new_bitmask(len(constrained), logits.shape[-1])
        fill_bitmasks(ctx.compiler, [rows[i].grammar for i in constrained], bitmask)  # type: ignore[misc]
        apply_bitmask(logits, torch.tensor(constrained, device=logits.device), bitmask)
        return GrammarMasks(constrained, bitmask)
    return None


def _pairs(logits: torch.Tensor, pairs: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    vocab = logits.shape[-1]
    kept = [(r, t) for r, t in pairs if 0 <= t < vocab]
    device = logits.device
    if not kept:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    rows, tokens = zip(*kept, strict=True)
    return to_device(rows, device, torch.long), to_device(tokens, device, torch.long)


def _logit_bias(logits: torch.Tensor, rows: Sequence[Row], biased: list[int]) -> None:
    vocab = logits.shape[-1]
    entries = [(i, t, b) for i in biased for t, b in rows[i].params.logit_bias if 0 <= t < vocab]
    if not entries:
        return
    device = logits.device
    index_rows = to_device([e[0] for e in entries], device, torch.long)
    index_tokens = to_device([e[1] for e in entries], device, torch.long)
    values = to_device([e[2] for e in entries], device, logits.dtype)
    logits.index_put_((index_rows, index_tokens), values, accumulate=True)


def _distinct_tokens(
    logits: torch.Tensor, token_lists: list[list[int]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each list's distinct tokens as (list index, token id, count) tensors, ids outside the
    vocabulary dropped. Work in the number of tokens, not rows x vocabulary: one host-to-device
    copy of all the lists together, one sort."""
    vocab = logits.shape[-1]
    device = logits.device
    lengths = torch.tensor([len(t) for t in token_lists], device=device)
    flat = torch.tensor(list(itertools.chain.from_iterable(token_lists)), dtype=torch.long)
    flat = flat.to(device)
    owner = torch.repeat_interleave(torch.arange(len(token_lists), device=device), lengths)
    # ids outside the vocabulary get a key past every real one, and are cut below
    keys = torch.where((flat >= 0) & (flat < vocab), owner * vocab + flat, len(token_lists) * vocab)
    distinct, counts = torch.unique(keys, return_counts=True)
    real = distinct < len(token_lists) * vocab
    distinct, counts = distinct[real], counts[real]
    return distinct // vocab, distinct % vocab, counts


def _repetition_penalty(logits: torch.Tensor, rows: Sequence[Row], repeated: list[int]) -> None:
    which, tokens, _ = _distinct_tokens(
        logits, [rows[i].prompt_ids + rows[i].output_ids for i in repeated]
    )
    device = logits.device
    batch_rows = torch.tensor(repeated, device=device)[which]
    penalty = torch.tensor([rows[i].params.repetition_penalty for i in repeated], device=device)
    penalty = penalty[which]
    values = logits[batch_rows, tokens]
    logits[batch_rows, tokens] = torch.where(values > 0, values / penalty, values * penalty)


def _presence_frequency(logits: torch.Tensor, rows: Sequence[Row], penalized: list[int]) -> None:
    which, tokens, counts = _distinct_tokens(logits, [rows[i].output_ids for i in penalized])
    device = logits.device
    batch_rows = torch.tensor(penalized, device=device)[which]
    frequency = torch.tensor([rows[i].params.frequency_penalty for i in penalized], device=device)
    presence = torch.tensor([rows[i].params.presence_penalty for i in penalized], device=device)
    amount = frequency[which] * counts.to(logits.dtype) + presence[which]
    logits.index_put_((batch_rows, tokens), -amount, accumulate=True)


def _block_stops(
    logits: torch.Tensor, rows: Sequence[Row], blocked: list[int], eos_token_ids: list[int]
) -> None:
    pairs = [(i, t) for i in blocked for t in {*eos_token_ids, *rows[i].params.stop_token_ids}]
    index_rows, index_tokens = _pairs(logits, pairs)
    if index_rows.numel():  # a device tensor of values: a Python float here is copied over
        logits.index_put_((index_rows, index_tokens), logits.new_full(index_rows.shape, -torch.inf))

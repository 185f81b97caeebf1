"""Next-token choice for a whole batch where every row has its own sampling settings.

One pass over the batch's logits, vectorized across rows, each stage only for the rows that ask
for it (a batch of plain greedy and top-p rows does what it did before any of this existed):

1. logit processors (logits.py): logit_bias, presence/frequency/repetition penalties, EOS and
   stop_token_ids masked until min_tokens, and grammar masks for structured outputs;
2. logprobs of rows that ask for them: log-softmax after temperature (greedy rows: 1), before
   top-k/top-p/min-p; the chosen token's and the top k;
3. greedy rows take the argmax; sampled rows share one softmax, then min-p, top-k and top-p
   (one sort for both) and a draw. Rows with a seed draw from their own generator, so a seeded
   request gives the same text whatever else shares its batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import torch

from llmserve.engine_api import SamplingParams, TokenLogprob
from llmserve.logits import LogitsContext, process_logits
from llmserve.structured import Grammar

MIN_TEMPERATURE = 1e-5


class Row(Protocol):
    """What sampling reads from a request (engine Sequences are Rows)."""

    params: SamplingParams
    generator: torch.Generator | None
    prompt_ids: list[int]
    output_ids: list[int]
    grammar: Grammar | None

    @property
    def remaining(self) -> int: ...


@dataclass
class PlainRow:
    """A Row for callers without a Sequence (tests, benchmarks)."""

    params: SamplingParams
    generator: torch.Generator | None = None
    prompt_ids: list[int] = field(default_factory=list)
    output_ids: list[int] = field(default_factory=list)
    grammar: Grammar | None = None
    remaining: int = 1 << 30


class Choice(NamedTuple):  # a tuple: hundreds are made every step
    token: int
    logprob: TokenLogprob | None = None


def pick_next_tokens(
    logits: torch.Tensor, rows: Sequence[Row], ctx: LogitsContext | None = None
) -> list[Choice]:
    """logits: [batch, vocab] for the last position of each row (modified in place when it is
    already float32)."""
    ctx = ctx or LogitsContext()
    logits = logits.float()
    params = [r.params for r in rows]
    masks = process_logits(logits, rows, ctx)
    logprobs = _Logprobs.of(logits, params)
    if masks is not None:
        ctx.steer_to_close(logits, rows, masks)
    choice = logits.argmax(dim=-1)
    # Below MIN_TEMPERATURE the division overflows float32 into inf/NaN; that close to 0 the
    # distribution is the argmax anyway, so such rows are greedy.
    sampled = [i for i, p in enumerate(params) if p.temperature >= MIN_TEMPERATURE]
    if sampled:
        _sample(logits, params, [r.generator for r in rows], sampled, choice)
    if logprobs is None:
        return [Choice(t) for t in choice.tolist()]
    return logprobs.choices(choice)


def _sample(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
    sampled: list[int],
    choice: torch.Tensor,
) -> None:
    device = logits.device
    rows = torch.tensor(sampled, device=device)
    temps = torch.tensor([params[i].temperature for i in sampled], device=device)
    probs = torch.softmax(logits[rows] / temps.unsqueeze(1), dim=-1)
    min_ps = [params[i].min_p for i in sampled]
    if any(m > 0 for m in min_ps):
        floor = torch.tensor(min_ps, device=device).unsqueeze(1) * probs.amax(-1, keepdim=True)
        probs = probs.masked_fill(probs < floor, 0.0)
    top_ks = [params[i].top_k for i in sampled]
    top_ps = [params[i].top_p for i in sampled]
    if any(k > 0 for k in top_ks) or any(p < 1.0 for p in top_ps):
        probs = _keep_top_k_top_p(probs, top_ks, top_ps)
    shared = [k for k, i in enumerate(sampled) if generators[i] is None]
    if shared:
        picks = torch.multinomial(probs[shared], 1).squeeze(1)
        choice[rows[shared]] = picks
    for k, i in enumerate(sampled):
        gen = generators[i]
        if gen is not None:
            choice[i] = torch.multinomial(probs[k], 1, generator=gen)[0]


def _keep_top_k_top_p(probs: torch.Tensor, top_ks: list[int], top_ps: list[float]) -> torch.Tensor:
    """Zero every token outside each row's k most likely (k 0: all) and outside the smallest set
    whose mass reaches top_p; one sort serves both, and the most likely token always stays."""
    vocab = probs.shape[-1]
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    drop_sorted = torch.zeros_like(sorted_probs, dtype=torch.bool)
    if any(k > 0 for k in top_ks):
        ks = torch.tensor([k if 0 < k < vocab else vocab for k in top_ks], device=probs.device)
        ranks = torch.arange(vocab, device=probs.device).unsqueeze(0)
        drop_sorted |= ranks >= ks.unsqueeze(1)
    if any(p < 1.0 for p in top_ps):
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        drop_sorted |= mass_before >= torch.tensor(top_ps, device=probs.device).unsqueeze(1)
    drop_sorted[:, 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    return probs.masked_fill(drop, 0.0)


class _Logprobs:
    """The logprobs of the rows that ask for them: one log-softmax (after temperature; greedy
    rows count as temperature 1) and one top-k for all of them, read back once per step."""

    def __init__(self, params: list[SamplingParams], wanted: list[int], logprobs: torch.Tensor):
        self.params, self.wanted, self.logprobs = params, wanted, logprobs
        k = min(max(params[i].logprobs or 0 for i in wanted), logprobs.shape[-1])
        self.top = logprobs.topk(k, dim=-1) if k else None

    @classmethod
    def of(cls, logits: torch.Tensor, params: list[SamplingParams]) -> _Logprobs | None:
        wanted = [i for i, p in enumerate(params) if p.logprobs is not None]
        if not wanted:
            return None
        device = logits.device
        scaled = logits[torch.tensor(wanted, device=device)]
        temps = [_temperature(params[i]) for i in wanted]
        if any(t != 1.0 for t in temps):
            scaled = scaled / torch.tensor(temps, device=device).unsqueeze(1)
        return cls(params, wanted, torch.log_softmax(scaled, dim=-1))

    def choices(self, choice: torch.Tensor) -> list[Choice]:
        tokens = choice.tolist()
        index = torch.tensor(self.wanted, device=choice.device)
        chosen = self.logprobs.gather(1, choice[index].unsqueeze(1)).squeeze(1).tolist()
        top_ids = self.top.indices.tolist() if self.top is not None else None
        top_values = self.top.values.tolist() if self.top is not None else None
        out = [Choice(t) for t in tokens]
        for row, i in enumerate(self.wanted):
            k = self.params[i].logprobs or 0
            top: tuple[tuple[int, float], ...] = ()
            if k and top_ids is not None and top_values is not None:
                top = tuple(zip(top_ids[row][:k], top_values[row][:k], strict=True))
            out[i] = Choice(tokens[i], TokenLogprob(tokens[i], chosen[row], top))
        return out


def _temperature(params: SamplingParams) -> float:
    """The temperature logprobs are taken at: the row's own, 1 for greedy rows."""
    return params.temperature if params.temperature >= MIN_TEMPERATURE else 1.0

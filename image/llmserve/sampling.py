"""Next-token choice for a whole batch where every row has its own sampling settings.

Greedy rows take the argmax; the other rows share one softmax / top-p pass. Rows with a seed
draw from their own generator, so a seeded request gives the same text whatever else shares
its batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llmserve.engine_api import SamplingParams

MIN_TEMPERATURE = 1e-5


def pick_next_tokens(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    generators: Sequence[torch.Generator | None],
    block_eos: Sequence[bool],
    eos_token_ids: Sequence[int],
) -> list[int]:
    """logits: [batch, vocab] for the last position of each row."""
    logits = logits.float()
    if eos_token_ids and any(block_eos):
        rows = torch.tensor([i for i, b in enumerate(block_eos) if b], device=logits.device)
        eos = torch.tensor(
            [t for t in eos_token_ids if t < logits.shape[-1]],
            device=logits.device,
            dtype=torch.long,
        )
        if eos.numel():
            logits[rows.unsqueeze(1), eos.unsqueeze(0)] = float("-inf")
    choice = logits.argmax(dim=-1)
    # Below MIN_TEMPERATURE the division overflows float32 into inf/NaN; that close to 0 the
    # distribution is the argmax anyway, so such rows are greedy.
    sampled = [i for i, p in enumerate(params) if p.temperature >= MIN_TEMPERATURE]
    if sampled:
        rows = torch.tensor(sampled, device=logits.device)
        temps = torch.tensor([params[i].temperature for i in sampled], device=logits.device)
        top_ps = torch.tensor([params[i].top_p for i in sampled], device=logits.device)
        probs = torch.softmax(logits[rows] / temps.unsqueeze(1), dim=-1)
        probs = _keep_top_p(probs, top_ps)
        shared = [k for k, i in enumerate(sampled) if generators[i] is None]
        if shared:
            picks = torch.multinomial(probs[shared], 1).squeeze(1)
            choice[rows[shared]] = picks
        for k, i in enumerate(sampled):
            gen = generators[i]
            if gen is not None:
                choice[i] = torch.multinomial(probs[k], 1, generator=gen)[0]
    return choice.tolist()


def _keep_top_p(probs: torch.Tensor, top_ps: torch.Tensor) -> torch.Tensor:
    """Zero every token outside the smallest set whose mass reaches top_p (always keep one)."""
    if bool((top_ps >= 1.0).all()):
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    drop_sorted = mass_before >= top_ps.unsqueeze(1)
    drop_sorted[:, 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    return probs.masked_fill(drop, 0.0)

"""Prefix caching for the padded KV cache: the keys and values of the last request that
finished, reused by the next one whose prompt starts with the same tokens.

Why: a chat client sends the whole conversation again every turn, so each turn's prompt is the
last turn's prompt, its answer and a new message. On the CPU a prompt costs ~1.4 ms a token to
prefill (SmolLM2-135M, 2 cores), so a 1,000-token conversation would wait 1.4 s for every
answer's first token. llama.cpp's server keeps the last prompt of each slot for this reason.
The paged cache has block-level prefix caching over every request (block_manager.py). The
padded cache keeps whole rows, so it keeps one: the last row to finish, copied out of the batch
when it leaves. A request that reuses it is prefilled through the chunked path, on its own cache
seeded with the shared prefix (scheduler.py), and it joins the batch like any chunked prompt.

At least one prompt token is always computed, because the first output token needs its logits.
Requests that want prompt logprobs reuse nothing: their logprobs come from their own prefill.
What it costs: one row's keys and values held until the next request finishes (at most the
context length; SmolLM2-135M in float32: 46 KB a token), and copying that row when it leaves.
On a GPU serving many users one row rarely matches, so there it is off unless asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from llmserve.engine_api import SamplingParams

# Fewer shared tokens than this are prefilled as usual: seeding a cache and taking the chunked
# path is not worth it for a handful of tokens, and a chat template's first few tokens are
# shared by every request.
MIN_REUSED_TOKENS = 16

LayerKV = tuple[torch.Tensor, torch.Tensor]  # keys, values: [1, kv heads, tokens, head dim]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class LastPromptCache:
    """One finished request's tokens and their keys and values, with vLLM's prefix-cache
    counters (in tokens): `queried` counts the prompt tokens of every request admitted, `hits`
    the tokens it reused."""

    def __init__(self, new_cache: Callable[[], Any]) -> None:
        self._new_cache = new_cache  # an empty cache of the model's kind (a DynamicCache)
        self.tokens: list[int] = []
        self.layers: list[LayerKV] = []
        self.queried = 0
        self.hits = 0

    def remember(self, tokens: list[int], layers: list[LayerKV]) -> None:
        """Keep `layers` (copies that the batch does not write to) for `tokens`. A row may hold
        one column more than its tokens (an overlapped step fed its last pick), or one fewer
        (its last pick was never fed): only columns that have a token are kept."""
        columns = layers[0][0].shape[-2] if layers else 0
        kept = min(columns, len(tokens))
        self.tokens = list(tokens[:kept])
        self.layers = [(k[:, :, :kept], v[:, :, :kept]) for k, v in layers]

    def clear(self) -> None:
        self.tokens, self.layers = [], []

    def reset_counters(self) -> None:
        self.queried = self.hits = 0

    def reusable(self, prompt: list[int], params: SamplingParams) -> int:
        """How many of `prompt`'s first tokens could come from the cache (0: none)."""
        if params.prompt_logprobs is not None or not self.tokens:
            return 0
        shared = min(common_prefix(self.tokens, prompt), len(prompt) - 1)
        return shared if shared >= MIN_REUSED_TOKENS else 0

    def seed_for(self, prompt: list[int], tokens: int) -> Any | None:
        """A cache seeded with `prompt`'s first `tokens` keys and values, counted as hits; None
        when the cache no longer holds them (another row finished since the scheduler looked:
        the prompt is then prefilled from its start)."""
        if common_prefix(self.tokens, prompt) < tokens:
            return None
        cache = self.seed(tokens)
        self.hits += tokens
        return cache

    def seed(self, tokens: int) -> Any:
        """A new cache holding the first `tokens` keys and values (copies)."""
        if not 0 < tokens <= len(self.tokens):
            raise ValueError(f"cannot reuse {tokens} tokens of {len(self.tokens)} cached")
        cache = self._new_cache()
        for index, (keys, values) in enumerate(self.layers):
            cache.update(keys[:, :, :tokens], values[:, :, :tokens], index)
        return cache

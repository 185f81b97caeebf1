"""One request's state inside the engine, shared by the engine's three stages.

The scheduler moves a sequence from the queue into the batch and out again (through a chunked
prefill when its prompt is longer than a step's token budget), the model runner reads its tokens
and position and keeps its grammar and penalties in force, and the output stage counts what it
generated, decides when it is finished and hands its text to whoever waits for it. With the paged
KV cache it also carries its block table (the scheduler's block manager fills it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from llmserve.detokenize import IncrementalDetokenizer
from llmserve.engine_api import Delta, RequestStream, SamplingParams, TokenLogprob
from llmserve.structured import Grammar


@dataclass(eq=False)  # identity: two requests are never 'equal'
class Sequence:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    detok: IncrementalDetokenizer
    # Where its deltas go: a client's stream (on that stream's event loop), or a plain callback
    # for the engine's own warm-up requests, which have no event loop.
    stream: RequestStream | None = None
    sink: Callable[[Delta], None] | None = None
    generator: torch.Generator | None = None  # its own, when it is seeded and sampled
    grammar: Grammar | None = None  # its structured output's state, when it has one
    limit: int = 1 << 30  # most tokens it may generate (max_tokens, and what the context leaves)
    output_ids: list[int] = field(default_factory=list)
    position: int = 0  # of its last token, for the next decode step
    finished: bool = False
    # Overlapped steps (engine.py): whether its parameters let a step be launched before the
    # last one's tokens are read back (nothing the host decides from each token: no grammar,
    # logprobs or penalties), and how many of its tokens are picked but not read back yet.
    overlappable: bool = True
    unread_tokens: int = 0
    # Chunked prefill: prompt tokens already in its own cache, and that cache until it joins.
    prefilled: int = 0
    chunk_cache: Any = None
    # The prompt's logprobs, when asked for: None for the first token, then one per token.
    prompt_logprobs: list[TokenLogprob | None] | None = None
    # Paged KV cache (block_manager.py): its blocks, the chained hashes of its context's full
    # blocks (computed once), and how often it was preempted (its blocks taken back).
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[bytes] = field(default_factory=list)
    preemptions: int = 0

    @property
    def generated(self) -> int:
        return len(self.output_ids)

    @property
    def last_token(self) -> int:
        return self.output_ids[-1] if self.output_ids else 0

    @property
    def remaining(self) -> int:
        """Tokens it may still generate."""
        return self.limit - len(self.output_ids)

    @property
    def context_ids(self) -> list[int]:
        """What a (re)admitted request prefills: its prompt, and after a preemption the tokens
        it had generated, so it carries on where it was."""
        return self.prompt_ids + self.output_ids if self.output_ids else self.prompt_ids

    @property
    def tokens(self) -> int:
        """Prompt and generated tokens: what it holds in the cache."""
        return len(self.prompt_ids) + len(self.output_ids)

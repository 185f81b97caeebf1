"""One request's state inside the engine, shared by the engine's three stages.

The scheduler moves a sequence from the queue into the batch and out again, the model runner
reads its last token and position, and the output stage counts what it generated, decides when it
is finished and hands its text to whoever waits for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from llmserve.detokenize import IncrementalDetokenizer
from llmserve.engine_api import Delta, RequestStream, SamplingParams


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
    generated: int = 0
    last_token: int = 0
    position: int = 0  # of its last token, for the next decode step
    finished: bool = False

    @property
    def tokens(self) -> int:
        """Prompt and generated tokens: what it holds in the cache."""
        return len(self.prompt_ids) + self.generated

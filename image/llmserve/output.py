"""What a step's tokens become for the client: stop rules, text, and delivery to its stream.

Each token is checked against the request's rules (EOS unless ignore_eos, its stop strings via
the incremental detokenizer, max_tokens, the context length) and turned into a `Delta` of new
text. Deltas wait in an outbox until the engine has retired the step's finished requests, so a
client that sees its last delta also sees its slot free; then they go out with one event-loop
callback per loop for the whole step, not one per request."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from llmserve.detokenize import IncrementalDetokenizer
from llmserve.engine_api import Delta, RequestStream
from llmserve.sequence import Sequence


class OutputStage:
    def __init__(self, tokenizer: Any, *, eos_token_ids: list[int], max_model_len: int) -> None:
        self.tokenizer = tokenizer
        self.eos_token_ids = list(eos_token_ids)
        self.max_model_len = max_model_len
        self._outbox: list[tuple[Sequence, Delta]] = []

    def detokenizer(self, stop: tuple[str, ...]) -> IncrementalDetokenizer:
        return IncrementalDetokenizer(self.tokenizer, stop)

    def accept(self, seqs: list[Sequence], tokens: list[int]) -> None:
        """Record each sequence's new token; marks the ones that are done `finished`."""
        for seq, token in zip(seqs, tokens, strict=True):
            self._accept(seq, token)

    def finish(self, seq: Sequence, reason: str, error: str | None = None) -> None:
        """End a request that stops for a reason other than its tokens ("cancelled", "error")."""
        seq.finished = True
        self._outbox.append((seq, Delta("", seq.generated, finish_reason=reason, error=error)))

    def discard(self) -> None:
        """Drop what the outbox holds (a failed step: its requests end with an error instead)."""
        self._outbox = []

    def flush(self) -> None:
        """Deliver the outbox: a client's stream gets its deltas on its own event loop."""
        outbox, self._outbox = self._outbox, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[RequestStream, Delta]]] = {}
        for seq, delta in outbox:
            if seq.stream is not None:
                by_loop.setdefault(seq.stream.loop, []).append((seq.stream, delta))
            elif seq.sink is not None:
                seq.sink(delta)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(_deliver, items)

    def _accept(self, seq: Sequence, token: int) -> None:
        seq.generated += 1
        seq.last_token = token
        is_eos = token in self.eos_token_ids and not seq.params.ignore_eos
        if not is_eos:
            seq.detok.add(token)
        finish: str | None = None
        if is_eos or seq.detok.stopped:
            finish = "stop"
        elif seq.generated >= seq.params.max_tokens or seq.tokens >= self.max_model_len:
            finish = "length"
        text = seq.detok.take_new_text(final=finish is not None)
        seq.finished = finish is not None
        self._outbox.append((seq, Delta(text, seq.generated, finish_reason=finish)))


def _deliver(items: list[tuple[RequestStream, Delta]]) -> None:
    for stream, delta in items:
        stream.push_on_loop(delta)

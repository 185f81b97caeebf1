"""What a step's tokens become for the client: stop rules, text, and delivery to its stream.

Each token is checked against the request's rules (EOS unless ignore_eos, its stop_token_ids,
its stop strings via the incremental detokenizer, its grammar being complete, max_tokens, the
context length) and turned into a `Delta` of new text, with the token's id and, when asked for,
its logprobs (the first delta also carries the prompt's). Deltas wait in an outbox until the
engine has retired the step's finished requests, so a client that sees its last delta also sees
its slot free; then they go out with one event-loop callback per loop for the whole step, not
one per request."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from llmserve.detokenize import IncrementalDetokenizer
from llmserve.engine_api import Delta, RequestStream
from llmserve.sampling import Choice
from llmserve.sequence import Sequence


class OutputStage:
    def __init__(self, tokenizer: Any, *, eos_token_ids: list[int], max_model_len: int) -> None:
        self.tokenizer = tokenizer
        self.eos_token_ids = list(eos_token_ids)
        self._eos = frozenset(self.eos_token_ids)
        self.max_model_len = max_model_len
        self._outbox: list[tuple[Sequence, Delta]] = []

    def detokenizer(self, stop: tuple[str, ...]) -> IncrementalDetokenizer:
        return IncrementalDetokenizer(self.tokenizer, stop)

    def accept(self, seqs: list[Sequence], choices: list[Choice]) -> None:
        """Record each sequence's new token; marks the ones that are done `finished`. One loop
        with the per-row work inline (no call per row, no properties): it runs for every row of
        every step on the engine thread, hundreds of times a step."""
        outbox = self._outbox
        eos = self._eos
        max_model_len = self.max_model_len
        for seq, choice in zip(seqs, choices, strict=True):
            token = choice.token
            output_ids = seq.output_ids
            output_ids.append(token)
            generated = len(output_ids)
            params = seq.params
            detok = seq.detok
            is_eos = token in eos and not params.ignore_eos
            is_stop_token = token in params.stop_token_ids
            if not (is_eos or is_stop_token):
                detok.add(token)
            finish: str | None = None
            error: str | None = None
            grammar = seq.grammar
            grammar_done = False
            if grammar is not None:
                if not grammar.accept(token):  # drawn under its mask: should never happen
                    finish, error = "error", f"structured output broke: {grammar.error()}"
                grammar_done = grammar.done()
            if finish is None:
                if is_eos or is_stop_token or detok.stopped or grammar_done:
                    finish = "stop"
                elif generated >= seq.limit or len(seq.prompt_ids) + generated >= max_model_len:
                    finish = "length"
            text = detok.take_new_text(final=finish is not None)
            seq.finished = finish is not None
            prompt_logprobs = None
            if generated == 1 and params.prompt_logprobs is not None:
                prompt_logprobs = tuple(seq.prompt_logprobs or [None])
            logprob = choice.logprob
            delta = Delta(
                text,
                generated,
                finish,
                error,
                (token,),
                () if logprob is None else (logprob,),
                prompt_logprobs,
            )
            outbox.append((seq, delta))

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
        last_loop: asyncio.AbstractEventLoop | None = None
        items: list[tuple[RequestStream, Delta]] = []
        for seq, delta in outbox:
            stream = seq.stream
            if stream is not None:
                loop = stream.loop
                if loop is not last_loop:  # one loop serves every stream outside tests
                    items, last_loop = by_loop.setdefault(loop, []), loop
                items.append((stream, delta))
            elif seq.sink is not None:
                seq.sink(delta)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(_deliver, items)


def _deliver(items: list[tuple[RequestStream, Delta]]) -> None:
    for stream, delta in items:
        stream.push_on_loop(delta)

"""Token ids to text, one step at a time, with stop strings.

Fast tokenizers decode through `tokenizers`' DecodeStream (one Rust call per token, which matters
at hundreds of tokens per step); others decode a short window of recent tokens. Text is held back
while the last bytes are an incomplete UTF-8 character or might be the start of a stop string,
so a client never sees half a character or a stop string it should not."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream

_REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any, stop: Sequence[str] = ()) -> None:
        self._tokenizer = tokenizer
        self._vocab_size = len(tokenizer)
        self._tokens: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self._stop = tuple(s for s in stop if s)
        self._holdback = max((len(s) for s in self._stop), default=1) - 1
        self.text = ""  # all text decoded so far (up to a stop string, if one was found)
        self._emitted = 0
        self.stopped = False
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._backend = backend if isinstance(backend, Tokenizer) else None
        self._stream = DecodeStream(skip_special_tokens=True) if self._backend else None

    def _decode(self, tokens: list[int]) -> str:
        return self._tokenizer.decode(tokens, skip_special_tokens=True)

    def add(self, token_id: int) -> None:
        """Append one token. Ids beyond the tokenizer's vocabulary (random weights, padded
        embedding tables) carry no text and are skipped rather than crashing the decoder."""
        if self.stopped or not 0 <= token_id < self._vocab_size:
            return
        if self._stream is not None:
            piece = self._stream.step(self._backend, token_id)
            if piece:
                self.text += piece
                if self._stop:
                    self._check_stop()
            return
        self._tokens.append(token_id)
        before = self._decode(self._tokens[self._prefix_offset : self._read_offset])
        after = self._decode(self._tokens[self._prefix_offset :])
        if after.endswith(_REPLACEMENT) or len(after) <= len(before):
            return  # an incomplete character: wait for the next token
        self.text += after[len(before) :]
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._tokens)
        self._check_stop()

    def _check_stop(self) -> None:
        if not self._stop:
            return
        search_from = max(0, self._emitted - self._holdback)
        hits = [i for s in self._stop if (i := self.text.find(s, search_from)) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True

    def take_new_text(self, final: bool = False) -> str:
        """Text not yet handed out; keeps back a possible stop-string prefix unless final."""
        end = (
            len(self.text)
            if (final or self.stopped)
            else max(self._emitted, len(self.text) - self._holdback)
        )
        new = self.text[self._emitted : end]
        self._emitted = end
        return new

"""The JSON-in-tags family (Hermes, Qwen2/2.5/3, SmolLM3 and others whose chat templates teach
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`): every tagged block is one call;
the text before the first tag is the answer's content. A block that is not a JSON object with a
name leaves the whole answer as text, as vLLM's hermes parser does."""

from __future__ import annotations

import json
import re

from llmserve.tool_parsers.base import (
    CallEvent,
    ContentEvent,
    Event,
    Parsed,
    ParsedCall,
    arguments_json,
)

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|\Z)", re.DOTALL)


def _call(body: str) -> ParsedCall | None:
    try:
        data = json.loads(body.strip())
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = arguments_json(data.get("arguments", data.get("parameters", {})))
    if arguments is None:
        return None
    return ParsedCall(data["name"], arguments)


class HermesParser:
    name = "hermes"

    def parse(self, text: str, tool_names: frozenset[str]) -> Parsed:
        start = text.find(OPEN)
        if start < 0:
            return Parsed(text)
        calls = [_call(m.group(1)) for m in _BLOCK.finditer(text, start)]
        if not calls or any(c is None for c in calls):
            return Parsed(text)
        content = text[:start].strip()
        return Parsed(content or None, tuple(c for c in calls if c is not None))

    def streamer(self, tool_names: frozenset[str]) -> HermesStream:
        return HermesStream()


class HermesStream:
    """Text flows out at once except a tail that could be the start of `<tool_call>`; a call's
    block is held until its closing tag, then goes out as one call."""

    def __init__(self) -> None:
        self._buffer = ""
        self._in_call = False

    def feed(self, text: str) -> list[Event]:
        self._buffer += text
        events: list[Event] = []
        while True:
            if self._in_call:
                end = self._buffer.find(CLOSE)
                if end < 0:
                    return events
                body, self._buffer = self._buffer[:end], self._buffer[end + len(CLOSE) :]
                self._in_call = False
                call = _call(body)
                events.append(CallEvent(call) if call else ContentEvent(OPEN + body + CLOSE))
                continue
            start = self._buffer.find(OPEN)
            if start >= 0:
                if start:
                    events.append(ContentEvent(self._buffer[:start]))
                self._buffer = self._buffer[start + len(OPEN) :]
                self._in_call = True
                continue
            keep = _partial_tag(self._buffer)
            out, self._buffer = (
                self._buffer[: len(self._buffer) - keep],
                self._buffer[len(self._buffer) - keep :],
            )
            if out:
                events.append(ContentEvent(out))
            return events

    def finish(self) -> list[Event]:
        rest, self._buffer = self._buffer, ""
        if self._in_call:
            self._in_call = False
            call = _call(rest)
            return [CallEvent(call) if call else ContentEvent(OPEN + rest)]
        return [ContentEvent(rest)] if rest else []


def _partial_tag(text: str) -> int:
    """Length of the longest tail of `text` that begins `<tool_call>`."""
    for size in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if OPEN.startswith(text[-size:]):
            return size
    return 0

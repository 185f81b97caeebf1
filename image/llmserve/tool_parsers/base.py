"""What every tool-call parser shares: the parsed call, the events a streaming parser emits, and
the tool-call ids and OpenAI wire shapes built from them."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class Parsed:
    """A whole answer split into its text (None when there is none) and its tool calls."""

    content: str | None
    calls: tuple[ParsedCall, ...] = ()


@dataclass(frozen=True)
class ContentEvent:
    text: str


@dataclass(frozen=True)
class CallEvent:
    call: ParsedCall


Event = ContentEvent | CallEvent


class StreamParser(Protocol):
    def feed(self, text: str) -> list[Event]:
        """New model text in, whatever can be told about it already out."""

    def finish(self) -> list[Event]:
        """The model has stopped: flush what was held back."""


class ToolParser(Protocol):
    name: str

    def parse(self, text: str, tool_names: frozenset[str]) -> Parsed: ...

    def streamer(self, tool_names: frozenset[str]) -> StreamParser: ...


def arguments_json(value: Any) -> str | None:
    """Arguments as JSON text of an object, or None when `value` is not an object."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if not isinstance(value, dict):
        return None
    return json.dumps(value, ensure_ascii=False)

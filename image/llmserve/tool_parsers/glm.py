"""The GLM family's format. ChatGLM3 answers a tool call with a role header whose metadata is
the function name and a Python block calling `tool_call(...)` with keyword arguments
(THUDM/ChatGLM3 PROMPT_en.md, "Tool Calling"):

    get_current_weather
    ```python
    tool_call(location="beijing", unit="celsius")
    ```

GLM-4 writes the arguments as JSON on the line after the name instead (`name\\n{"location":
...}`). The role tokens are special tokens and never reach the text, so an answer is a call
when its first line is the name of a given tool. The keyword arguments are read with
`ast.literal_eval`, never evaluated."""

from __future__ import annotations

import ast
import json

from llmserve.tool_parsers.base import (
    CallEvent,
    ContentEvent,
    Event,
    Parsed,
    ParsedCall,
    arguments_json,
)

_MAX_NAME = 256


def _python_kwargs(code: str) -> str | None:
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    call = tree.body
    if not (isinstance(call, ast.Call) and not call.args):
        return None
    try:
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return None
    try:
        return json.dumps(kwargs, ensure_ascii=False)
    except (TypeError, ValueError):  # sets, bytes, complex: not JSON
        return None


def _arguments(body: str) -> str | None:
    body = body.strip()
    if body.startswith("```"):
        lines = body.split("\n")
        end = next((i for i in range(len(lines) - 1, 0, -1) if lines[i].strip() == "```"), None)
        code = "\n".join(lines[1:end])
        return _python_kwargs(code)
    if body.startswith("{"):
        return arguments_json(body)
    return None


class GlmParser:
    name = "glm"

    def parse(self, text: str, tool_names: frozenset[str]) -> Parsed:
        head, sep, body = text.lstrip(" ").partition("\n")
        name = head.strip()
        if not sep or name not in tool_names:
            return Parsed(text)
        arguments = _arguments(body)
        if arguments is None:
            return Parsed(text)
        return Parsed(None, (ParsedCall(name, arguments),))

    def streamer(self, tool_names: frozenset[str]) -> GlmStream:
        return GlmStream(self, tool_names)


class GlmStream:
    """Holds the first line until it is known whether it names a tool: plain answers then flow
    through; a call is held until the model stops."""

    def __init__(self, parser: GlmParser, tool_names: frozenset[str]) -> None:
        self._parser, self._names = parser, tool_names
        self._buffer = ""
        self._mode: str | None = None  # None: undecided, "text", "call"

    def feed(self, text: str) -> list[Event]:
        if self._mode == "text":
            return [ContentEvent(text)] if text else []
        self._buffer += text
        if self._mode == "call":
            return []
        head, sep, _ = self._buffer.lstrip(" ").partition("\n")
        if not sep and len(self._buffer) <= _MAX_NAME:
            return []
        if sep and head.strip() in self._names:
            self._mode = "call"
            return []
        self._mode = "text"
        out, self._buffer = self._buffer, ""
        return [ContentEvent(out)]

    def finish(self) -> list[Event]:
        rest, self._buffer = self._buffer, ""
        if not rest:
            return []
        parsed = self._parser.parse(rest, self._names)
        if parsed.calls:
            return [CallEvent(c) for c in parsed.calls]
        return [ContentEvent(rest)]

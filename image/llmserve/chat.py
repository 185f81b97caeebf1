"""/v1/chat/completions once the request is checked: tool modes, choices, logprobs, streaming.

Tool modes: "none" (tools are not shown to the model, nothing is parsed), "auto" (tools go into
the chat template and the model's own tool-call format is parsed from its text by the family's
parser), "required" / a named function (decoding is constrained to JSON, see
tool_parsers/forced.py, and the call is read from it)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from llmserve import protocol
from llmserve.engine_api import Delta
from llmserve.generation import (
    SPLICE,
    Run,
    TextFrames,
    close_all,
    event_frames,
    interleave,
    is_failure,
    single_choice_frames,
    stream_error,
)
from llmserve.logprobs_format import chat_logprobs
from llmserve.tool_parsers import forced
from llmserve.tool_parsers.base import CallEvent, ContentEvent, Parsed, ParsedCall, ToolParser


@dataclass(frozen=True)
class ToolMode:
    kind: str  # "off" | "auto" | "named" | "required"
    names: frozenset[str] = frozenset()
    named: str | None = None
    parallel: bool = True

    @staticmethod
    def of(body: protocol.ChatCompletionRequest) -> ToolMode:
        tools = body.tools or []
        names = frozenset(t.function.name for t in tools)
        choice = body.tool_choice
        parallel = body.parallel_tool_calls is not False
        if not tools or choice == "none":
            return ToolMode("off")
        if isinstance(choice, protocol.NamedToolChoice):
            return ToolMode("named", names, choice.function.name, parallel)
        if choice == "required":
            return ToolMode("required", names, parallel=parallel)
        return ToolMode("auto", names, parallel=parallel)

    @property
    def shows_tools(self) -> bool:
        return self.kind != "off"


def parse_answer(text: str, mode: ToolMode, parser: ToolParser) -> Parsed:
    if mode.kind == "named" and mode.named is not None:
        return Parsed(None, (forced.named_call(mode.named, text),))
    if mode.kind == "required":
        call = forced.required_call(text, mode.names)
        return Parsed(None, (call,)) if call else Parsed(text)
    if mode.kind == "auto":
        parsed = parser.parse(text, mode.names)
        if not mode.parallel and len(parsed.calls) > 1:
            return Parsed(parsed.content, parsed.calls[:1])
        return parsed
    return Parsed(text)


def finish_reason(reason: str, called: bool) -> str:
    return "tool_calls" if called and reason == "stop" else reason


def reply(
    id_: str,
    model: str,
    deltas: list[Delta],
    mode: ToolMode,
    parser: ToolParser,
    top_logprobs: int | None,
    token_text: Callable[[int], str],
    prompt_tokens: int,
) -> dict[str, Any]:
    choices = []
    for index, delta in enumerate(deltas):
        parsed = parse_answer(delta.text, mode, parser)
        calls = [c.wire() for c in parsed.calls]
        logprobs = (
            chat_logprobs(delta.logprobs, token_text, top_logprobs)
            if top_logprobs is not None
            else None
        )
        choices.append(
            protocol.chat_choice(
                index,
                protocol.chat_message(parsed.content, calls),
                finish_reason(delta.finish_reason or "stop", bool(calls)),
                logprobs,
            )
        )
    completion = sum(d.completion_tokens for d in deltas)
    return protocol.chat_completion(id_, model, choices, prompt_tokens, completion)


class _ChoiceStream:
    """One choice's text turned into OpenAI deltas (content, or tool_calls pieces)."""

    def __init__(self, mode: ToolMode, parser: ToolParser) -> None:
        self.mode = mode
        self.parser = parser.streamer(mode.names) if mode.kind == "auto" else None
        self.calls = 0
        self.held = ""  # "required": the JSON is read whole at the end
        self.named_id: str | None = None

    def _call_pieces(self, call: ParsedCall) -> list[dict[str, Any]]:
        if not self.mode.parallel and self.calls >= 1:
            return []
        piece = {"index": self.calls, **call.wire()}
        self.calls += 1
        return [{"tool_calls": [piece]}]

    def feed(self, text: str) -> list[dict[str, Any]]:
        if self.mode.kind == "named":
            out = []
            if self.named_id is None:
                call = ParsedCall(self.mode.named or "", "")
                self.named_id = call.id
                out.append({"tool_calls": [{"index": 0, **call.wire()}]})
                self.calls = 1
            if text:
                out.append({"tool_calls": [{"index": 0, "function": {"arguments": text}}]})
            return out
        if self.mode.kind == "required":
            self.held += text
            return []
        if self.parser is None:
            return [{"content": text}] if text else []
        return self._events(self.parser.feed(text))

    def finish(self) -> list[dict[str, Any]]:
        if self.mode.kind == "named":
            return self.feed("") if self.named_id is None else []
        if self.mode.kind == "required":
            call = forced.required_call(self.held, self.mode.names)
            if call is None:
                return [{"content": self.held}] if self.held else []
            return self._call_pieces(call)
        if self.parser is None:
            return []
        return self._events(self.parser.finish())

    def _events(self, events: list[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in events:
            if isinstance(event, ContentEvent) and event.text:
                out.append({"content": event.text})
            elif isinstance(event, CallEvent):
                out.extend(self._call_pieces(event.call))
        return out


def frames(
    runs: list[Run],
    id_: str,
    model: str,
    mode: ToolMode,
    parser: ToolParser,
    top_logprobs: int | None,
    token_text: Callable[[int], str],
    include_usage: bool,
    continuous_usage: bool,
) -> AsyncIterator[str]:
    """The SSE frames of a streamed answer. One choice of plain text (no tools, no logprobs,
    no usage per chunk: what nearly every client asks) takes the fast path, which writes the
    same bytes as `events` (tests/server/test_stream_fast_path.py holds them equal)."""
    if len(runs) == 1 and mode.kind == "off" and top_logprobs is None and not continuous_usage:
        fast = plain_frames(runs[0], id_, model, include_usage)
        if fast is not None:
            return fast
    return event_frames(
        events(
            runs,
            id_,
            model,
            mode,
            parser,
            top_logprobs,
            token_text,
            include_usage,
            continuous_usage,
        ),
        lambda: close_all(runs),
    )


def plain_frames(run: Run, id_: str, model: str, include_usage: bool) -> AsyncIterator[str] | None:
    """`events` for one run in mode "off" without logprobs, spliced (None: cannot splice)."""
    created = int(time.time())

    def chunk(choice: dict[str, Any]) -> dict[str, Any]:
        return protocol.chat_chunk(id_, model, created, [choice])

    text_frame = TextFrames.of(chunk(protocol.chat_chunk_choice(0, {"content": SPLICE})))
    if text_frame is None:
        return None

    def closing(delta: Delta) -> list[dict[str, Any]]:
        last = [chunk(protocol.chat_chunk_choice(0, {"content": delta.text}))] if delta.text else []
        return [*last, chunk(protocol.chat_chunk_choice(0, {}, delta.finish_reason))]

    def usage_chunk() -> dict[str, Any]:
        return protocol.chat_chunk(id_, model, created, [], run.usage())

    opening = [chunk(protocol.chat_chunk_choice(0, {"role": "assistant", "content": ""}))]
    return single_choice_frames(
        run, opening, text_frame, closing, usage_chunk if include_usage else None
    )


async def events(
    runs: list[Run],
    id_: str,
    model: str,
    mode: ToolMode,
    parser: ToolParser,
    top_logprobs: int | None,
    token_text: Callable[[int], str],
    include_usage: bool,
    continuous_usage: bool,
) -> AsyncIterator[dict[str, Any]]:
    created = int(time.time())
    prompt_tokens = sum(r.stream.prompt_tokens for r in runs[:1])
    choices = [_ChoiceStream(mode, parser) for _ in runs]

    def chunk(choice: dict[str, Any], run: Run) -> dict[str, Any]:
        usage = run.usage() if continuous_usage else None
        return protocol.chat_chunk(id_, model, created, [choice], usage)

    for index, run in enumerate(runs):
        first = protocol.chat_chunk_choice(index, {"role": "assistant", "content": ""})
        yield chunk(first, run)
    async for index, delta in interleave(runs):
        run = runs[index]
        if is_failure(delta):
            yield stream_error(delta)
            return
        logprobs = (
            chat_logprobs(delta.logprobs, token_text, top_logprobs)
            if top_logprobs is not None and delta.logprobs
            else None
        )
        pieces = choices[index].feed(delta.text)
        if delta.finish_reason is not None:
            pieces += choices[index].finish()
        for i, piece in enumerate(pieces):
            first_logprobs = logprobs if i == 0 else None
            yield chunk(protocol.chat_chunk_choice(index, piece, None, first_logprobs), run)
        if not pieces and logprobs is not None:
            yield chunk(protocol.chat_chunk_choice(index, {}, None, logprobs), run)
        if delta.finish_reason is not None:
            reason = finish_reason(delta.finish_reason, choices[index].calls > 0)
            yield chunk(protocol.chat_chunk_choice(index, {}, reason), run)
    if include_usage:
        completion = sum(r.completion_tokens for r in runs)
        yield protocol.chat_chunk(
            id_, model, created, [], protocol.usage(prompt_tokens, completion)
        )

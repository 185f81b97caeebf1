"""Admitted requests on the HTTP side: one `Run` per engine request (a response with n choices,
or a batch of prompts, is several), their timings and metrics, interleaving their deltas, and the
SSE body that always ends with `[DONE]`. A stream of one plain-text choice (what nearly every
client asks for) takes a fast path: one generator over its run, each chunk's JSON serialized
once per request with the token's text spliced in, byte for byte the general path's frames.

At the drain deadline every open run gets a final "cancelled" delta pushed into its stream, so
a stream still running then ends with an error event and `[DONE]` instead of being cut."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from json.encoder import encode_basestring
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from llmserve import protocol
from llmserve.engine_api import (
    Delta,
    Engine,
    EngineStoppedError,
    QueueFullError,
    RequestStream,
    SamplingParams,
    StructuredOutputError,
)
from llmserve.errors import APIError, error_type
from llmserve.metrics import ServerMetrics

log = logging.getLogger("llmserve.generation")
RETRY_AFTER_SECONDS = "1"
DISCONNECT_POLL_S = 0.5


class RunRegistry:
    """The runs in flight, so draining can count them and end them at its deadline."""

    def __init__(self) -> None:
        self.runs: set[Run] = set()

    def __len__(self) -> int:
        return len(self.runs)

    def abort_all(self) -> int:
        runs = list(self.runs)
        for run in runs:
            run.abort()
        return len(runs)


class Run:
    def __init__(
        self, stream: RequestStream, registry: RunRegistry, metrics: ServerMetrics
    ) -> None:
        self.stream, self.registry, self.metrics = stream, registry, metrics
        self.submitted = time.perf_counter()
        self.first_token: float | None = None
        self.last_token: float | None = None
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self.done = False
        registry.runs.add(self)

    def note(self, delta: Delta) -> None:
        now = time.perf_counter()
        new = delta.completion_tokens - self.completion_tokens
        if new > 0:
            if self.first_token is None:
                self.first_token = now
            elif self.last_token is not None:
                self.metrics.observe_gaps(now - self.last_token, new)
            self.last_token = now
            self.completion_tokens = delta.completion_tokens
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason

    def usage(self) -> dict[str, int]:
        return protocol.usage(self.stream.prompt_tokens, self.completion_tokens)

    async def next(self) -> Delta:
        delta = await self.stream.next_delta()
        self.note(delta)
        return delta

    def abort(self) -> None:
        """End this run now with a "cancelled" delta (the drain deadline, a gone client)."""
        if not self.stream.finished:
            self.stream.push_on_loop(Delta("", self.completion_tokens, finish_reason="cancelled"))
            self.stream.cancel()

    def close(self) -> None:
        if self.done:
            return
        self.done = True
        self.registry.runs.discard(self)
        if not self.stream.finished:
            self.stream.cancel()
        self.metrics.observe_request(
            self.stream.prompt_tokens,
            self.completion_tokens,
            self.submitted,
            self.first_token,
            time.perf_counter(),
            self.finish_reason or "cancelled",
        )


def retry_later(status: int, message: str, code: str) -> APIError:
    """A refusal the client may retry after RETRY_AFTER_SECONDS."""
    return APIError(status, message, code=code, headers={"Retry-After": RETRY_AFTER_SECONDS})


def admit(
    engine: Engine,
    requests: list[tuple[list[int], SamplingParams]],
    registry: RunRegistry,
    metrics: ServerMetrics,
) -> list[Run]:
    """Submit every request or none: a refusal part way cancels the ones already queued."""
    runs: list[Run] = []
    try:
        for prompt_ids, params in requests:
            runs.append(Run(engine.submit(prompt_ids, params), registry, metrics))
    except QueueFullError as err:
        close_all(runs)
        raise retry_later(
            429, f"the server is at capacity ({err}); retry later", "queue_full"
        ) from None
    except StructuredOutputError as err:
        close_all(runs)
        raise APIError(400, str(err), param="response_format", code="invalid_schema") from None
    except EngineStoppedError as err:
        close_all(runs)
        raise retry_later(503, f"the engine is not running ({err})", "engine_stopped") from None
    return runs


def close_all(runs: list[Run]) -> None:
    for run in runs:
        run.close()


async def interleave(runs: list[Run]) -> AsyncIterator[tuple[int, Delta]]:
    """(choice index, delta) from all runs as they come; each run's last delta ends it."""
    if len(runs) == 1:
        while True:
            delta = await runs[0].next()
            yield 0, delta
            if delta.finish_reason is not None:
                return
    pending = {asyncio.ensure_future(run.next()): i for i, run in enumerate(runs)}
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: pending[f]):
                index = pending.pop(future)
                delta = future.result()
                yield index, delta
                if delta.finish_reason is None:
                    pending[asyncio.ensure_future(runs[index].next())] = index
    finally:
        for future in pending:
            future.cancel()


def failure(delta: Delta) -> APIError:
    """Why a generation ended in "error" or "cancelled"; answered as JSON or as an SSE event."""
    if delta.finish_reason == "error":
        return APIError(500, delta.error or "generation failed", code="generation_failed")
    return retry_later(
        503, "the request was cancelled because the server is shutting down", "server_draining"
    )


def is_failure(delta: Delta) -> bool:
    return delta.finish_reason in ("error", "cancelled")


def stream_error(delta: Delta) -> dict[str, Any]:
    err = failure(delta)
    return protocol.error_body(err.message, error_type(err.status), err.param, err.code)


async def collect(runs: list[Run], request: Request) -> list[Delta]:
    """Each run's whole answer as one merged delta. A client that hangs up is noticed within
    half a second, also while tokens keep coming, and its runs leave the batch."""
    merged: list[Delta | None] = [None] * len(runs)

    async def watch() -> None:
        while True:
            await asyncio.sleep(DISCONNECT_POLL_S)
            if await request.is_disconnected():
                for run in runs:
                    run.abort()
                return

    watcher = asyncio.ensure_future(watch())
    try:
        async for index, delta in interleave(runs):
            previous = merged[index]
            merged[index] = delta if previous is None else previous.merged(delta)
            if is_failure(delta):
                raise failure(delta)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        close_all(runs)
    return [d for d in merged if d is not None]


def frame(event: dict[str, Any]) -> str:
    """One SSE event of a JSON body, as every stream writes it."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


DONE_FRAME = "data: [DONE]\n\n"
SPLICE = "\x00llmserve-splice\x00"  # where TextFrames puts the text; JSON writes \u0000
_SPLICED = json.dumps(SPLICE)


class TextFrames:
    """The frames of one chunk body whose only varying part is one string field, serialized
    once per request: a frame is then one JSON string escape and two concatenations instead of
    three dicts and a json.dumps, and byte for byte what `frame` writes for the same body."""

    def __init__(self, head: str, tail: str) -> None:
        self.head, self.tail = head, tail

    @staticmethod
    def of(body: dict[str, Any]) -> TextFrames | None:
        """`body` with SPLICE where the text goes; None if SPLICE's JSON appears other than once
        (a model name or id equal to it: those streams take the general path)."""
        parts = frame(body).split(_SPLICED)
        return TextFrames(*parts) if len(parts) == 2 else None

    def __call__(self, text: str) -> str:
        return self.head + encode_basestring(text) + self.tail


async def event_frames(
    events: AsyncIterator[dict[str, Any]], on_close: Callable[[], None]
) -> AsyncIterator[str]:
    """The general path: every event a body, and `[DONE]` after the last."""
    try:
        async for event in events:
            yield frame(event)
        yield DONE_FRAME
    finally:
        on_close()  # also when the client disconnects: frees the engine slots


async def single_choice_frames(
    run: Run,
    opening: list[dict[str, Any]],
    text_frame: TextFrames,
    closing: Callable[[Delta], list[dict[str, Any]]],
    usage_chunk: Callable[[], dict[str, Any]] | None,
) -> AsyncIterator[str]:
    """The fast path of a stream with one choice of plain text (no tools, no logprobs, no usage
    per chunk): the same frames as the endpoint's general `events` through `event_frames`, in
    one generator over the run (no interleave, no dicts per token). `closing` gives the events
    of the last delta, `usage_chunk` the usage event (None: not asked for)."""
    head, tail, stream = text_frame.head, text_frame.tail, run.stream
    try:
        for event in opening:
            yield frame(event)
        while True:
            delta = await stream.next_delta()  # Run.next, one coroutine less per token
            run.note(delta)
            if delta.finish_reason is None:
                if delta.text:
                    yield head + encode_basestring(delta.text) + tail  # text_frame(delta.text)
                continue
            if is_failure(delta):
                yield frame(stream_error(delta))
                break
            for event in closing(delta):
                yield frame(event)
            if usage_chunk is not None:
                yield frame(usage_chunk())
            break
        yield DONE_FRAME
    finally:
        run.close()  # also when the client disconnects: frees the engine slot


def sse(frames: AsyncIterator[str]) -> StreamingResponse:
    """The streamed response; `frames` end with [DONE] and free their runs when closed."""
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

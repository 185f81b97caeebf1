"""The small interface between the HTTP layer and whatever generates tokens.

The API layer only ever sees `Engine`: submit a tokenized request, iterate its `Delta`s, cancel
it, read `EngineStats`. A faster engine (CUDA graphs, paged attention, another library) can
replace the first one without touching the wire protocol or the routes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class StructuredOutput:
    """Decode only text that is valid JSON ("json_object") or valid JSON matching `schema`
    ("json_schema": a JSON Schema, serialized), whatever the model's weights prefer."""

    kind: str  # "json_object" | "json_schema"
    schema: str | None = None


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # keep generating past EOS (benchmarks on random weights)
    min_tokens: int = 0  # EOS (and stop_token_ids) are masked out until this many tokens exist
    top_k: int = 0  # 0: off
    min_p: float = 0.0  # 0: off
    presence_penalty: float = 0.0  # OpenAI's, over generated tokens
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0  # vLLM's / HF's, over prompt and generated tokens; 1: off
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias added to its logit)
    stop_token_ids: tuple[int, ...] = ()  # ends the request like EOS, finish_reason "stop"
    logprobs: int | None = None  # None: none; k >= 0: each chosen token's logprob and the top k
    prompt_logprobs: int | None = None  # the same for the prompt tokens (completions' echo)
    structured: StructuredOutput | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """One position's log-probability (after temperature, before top-p/top-k) of the token
    chosen there, and the most likely tokens at that position, best first."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class Delta:
    """New text for one request. The last delta of a request carries `finish_reason`."""

    text: str
    completion_tokens: int  # total generated so far
    finish_reason: str | None = None  # "stop" | "length" | "cancelled" | "error"
    error: str | None = None
    token_ids: tuple[int, ...] = ()  # the tokens generated since the last delta
    logprobs: tuple[TokenLogprob, ...] = ()  # one per token in token_ids, when asked for
    # The prompt's, on the first delta only, when asked for (None for the first prompt token).
    prompt_logprobs: tuple[TokenLogprob | None, ...] | None = None

    def merged(self, later: Delta) -> Delta:
        """This delta followed by a later one of the same request, as one."""
        return Delta(
            self.text + later.text,
            later.completion_tokens,
            later.finish_reason,
            later.error,
            self.token_ids + later.token_ids,
            self.logprobs + later.logprobs,
            self.prompt_logprobs if self.prompt_logprobs is not None else later.prompt_logprobs,
        )


@dataclass(frozen=True)
class EngineStats:
    queue_depth: int
    running: int
    cache_tokens: int
    cache_capacity_tokens: int
    # Prefix caching (paged KV cache), cumulative tokens: looked up, and found cached.
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    preemptions: int = 0  # requests whose blocks were taken back to be recomputed, cumulative

    @property
    def cache_usage(self) -> float:
        return self.cache_tokens / self.cache_capacity_tokens if self.cache_capacity_tokens else 0.0


class QueueFullError(RuntimeError):
    """The waiting queue is at its bound: the caller should retry later (HTTP 429)."""


class EngineStoppedError(RuntimeError):
    """The engine no longer admits requests (shutting down or crashed)."""


class StructuredOutputError(ValueError):
    """`submit` refuses a request whose SamplingParams.structured cannot be compiled into a
    grammar (an unknown kind, a schema that is not JSON, a JSON Schema the grammar library cannot
    build, a tokenizer it cannot read). The message says why; the HTTP layer answers 400 with it
    (param "response_format")."""


_ids = itertools.count()


@dataclass
class RequestStream:
    """The consumer side of one request: an async iterator over its deltas, fed from the engine's
    thread through the event loop, so producers never block on slow clients."""

    prompt_tokens: int
    _cancel: Callable[[str], None]
    _loop: asyncio.AbstractEventLoop
    request_id: str = field(default_factory=lambda: f"req-{next(_ids)}")
    _queue: asyncio.Queue[Delta] = field(default_factory=asyncio.Queue)
    finished: bool = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def push_on_loop(self, delta: Delta) -> None:
        """Called on the event loop (engines batch many deltas into one loop callback)."""
        self._queue.put_nowait(delta)

    def cancel(self) -> None:
        if not self.finished:
            self._cancel(self.request_id)

    async def __aiter__(self) -> AsyncIterator[Delta]:
        while not self.finished:
            yield await self.next_delta()

    async def next_delta(self) -> Delta:
        """The next delta, merged with any others already waiting: a client that falls behind
        gets fewer, larger chunks instead of an ever longer backlog."""
        delta = await self._queue.get()
        while delta.finish_reason is None and not self._queue.empty():
            delta = delta.merged(self._queue.get_nowait())
        if delta.finish_reason is not None:
            self.finished = True
        return delta


class Engine(Protocol):
    max_model_len: int

    def start(self) -> None:
        """Load what is left to load, warm up, start generating."""

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestStream:
        """Queue a request; raises QueueFullError or EngineStoppedError. Call on the event loop."""

    def cancel(self, request_id: str) -> None:
        """Drop a queued or running request now; its slot is free for the next step."""

    def stats(self) -> EngineStats: ...

    def in_flight(self) -> int:
        """Requests queued or running (graceful shutdown waits for this to reach 0)."""

    def alive(self) -> bool:
        """False once generation has stopped for good: the process should be restarted."""

    def stop(self) -> None:
        """Stop generating; unfinished requests end with finish_reason 'cancelled'."""

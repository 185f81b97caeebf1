"""The HTTP layer: routes, request checks, SSE streaming, readiness and draining.

It talks to the engine only through `llmserve.engine_api.Engine` and to the wire format only
through `llmserve.protocol`. The model loads in a background thread after the port opens, so /health
answers at once and /ready turns true when the weights are loaded and warmed."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from hmac import compare_digest
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError

from llmserve import protocol
from llmserve.engine_api import (
    Delta,
    Engine,
    EngineStats,
    EngineStoppedError,
    QueueFullError,
    RequestStream,
    SamplingParams,
)
from llmserve.errors import APIError, describe_validation_error, error_type, install_error_handlers
from llmserve.metrics import ServerMetrics
from llmserve.settings import Settings

log = logging.getLogger("llmserve.app")

STATIC_DIR = Path(__file__).parent / "static"
RETRY_AFTER_SECONDS = "1"
_Body = TypeVar("_Body", bound=BaseModel)
_ROUTES = {
    "/",
    "/health",
    "/ready",
    "/metrics",
    "/v1/models",
    "/v1/chat/completions",
    "/v1/completions",
}


@dataclass
class Backend:
    """What a loader hands the app once the model is ready."""

    engine: Engine
    tokenizer: Any
    model_name: str
    vocab_size: int


@dataclass
class ServerState:
    settings: Settings
    backend: Backend | None = None
    load_error: str | None = None
    draining: bool = False
    active_requests: int = 0
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def ready(self) -> bool:
        return self.backend is not None and not self.draining and self.backend.engine.alive()

    @property
    def engine_dead(self) -> bool:
        return self.backend is not None and not self.backend.engine.alive()


def _empty_stats() -> EngineStats:
    return EngineStats(0, 0, 0, 0)


class _MetricsMiddleware:
    """Counts every response by route and status; a plain ASGI middleware, so streaming
    responses and client disconnects pass through untouched."""

    def __init__(self, app: Any, metrics: Callable[[], ServerMetrics]) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in _ROUTES else "other"

        started = False

        async def counting_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self.metrics().requests.labels(route, str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            # Starlette answers an unhandled error with a 500 outside this middleware.
            if not started:
                self.metrics().requests.labels(route, "500").inc()
            raise


def create_app(
    settings: Settings,
    load_backend: Callable[[], Backend],
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    state = ServerState(settings=settings)
    metrics = ServerMetrics(
        lambda: state.backend.engine.stats() if state.backend else _empty_stats()
    )

    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        def load() -> None:
            try:
                backend = load_backend()
            except Exception as err:
                log.exception("model load failed")
                message = f"model load failed: {err}"
                loop.call_soon_threadsafe(setattr, state, "load_error", message)
                if on_fatal is not None:
                    loop.call_soon_threadsafe(on_fatal, message)
                return
            loop.call_soon_threadsafe(setattr, state, "backend", backend)
            log.info("model %s loaded and warmed; ready", backend.model_name)

        threading.Thread(target=load, name="llmserve-load", daemon=True).start()
        yield
        if state.backend is not None:
            state.backend.engine.stop()

    app = FastAPI(
        title="llmserve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.server = state
    app.add_middleware(_MetricsMiddleware, metrics=lambda: metrics)
    install_error_handlers(app)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = STATIC_DIR / "index.html"
        if not page.is_file():
            raise APIError(404, "the chat page is not installed in this image")
        return FileResponse(page)

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.engine_dead and not state.draining:  # liveness fails: Kubernetes restarts us
            return JSONResponse(
                {
                    "status": "engine_stopped",
                    **protocol.error_body(
                        "the generation engine has stopped",
                        "service_unavailable",
                        code="engine_stopped",
                    ),
                },
                status_code=503,
            )
        return JSONResponse({"status": "ok"})

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if state.ready:
            return JSONResponse({"status": "ready"})
        status = (
            "draining"
            if state.draining
            else "failed"
            if state.load_error
            else "engine_stopped"
            if state.engine_dead
            else "loading"
        )
        return JSONResponse(
            {
                "status": status,
                **protocol.error_body(f"not ready: {status}", "service_unavailable", code=status),
            },
            status_code=503,
        )

    @app.get("/metrics")
    async def metrics_route() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def authorize(request: Request) -> None:
        key = settings.api_key
        if key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise APIError(
                401,
                "missing API key: send 'Authorization: Bearer <key>'",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not compare_digest(token.strip().encode(), key.encode()):
            raise APIError(
                401,
                "incorrect API key provided",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def backend_or_503() -> Backend:
        if state.draining:
            raise APIError(
                503,
                "the server is shutting down; retry on another replica",
                code="server_draining",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        if state.backend is None:
            raise APIError(
                503,
                "the model is still loading" if state.load_error is None else state.load_error,
                code="model_not_ready",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        return state.backend

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorize(request)
        backend = backend_or_503()
        return protocol.model_list(backend.model_name, state.created)

    async def generate(
        request: Request,
        backend: Backend,
        body: Any,
        prompt_ids: list[int],
        prompt_field: str,
        id_prefix: str,
        events: Callable[..., Any],
        reply: Callable[..., dict[str, Any]],
    ) -> Response:
        """What both generation routes share once the prompt is tokens."""
        params = _sampling(body, len(prompt_ids), backend.engine.max_model_len, prompt_field)
        stream = _admit(backend.engine, prompt_ids, params)
        run = _Run(stream, time.perf_counter(), state, metrics)
        id_ = protocol.new_id(id_prefix)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _sse(events(run, id_, backend.model_name, include_usage), run)
        text, finish = await run.collect(request)
        return JSONResponse(
            reply(
                id_, backend.model_name, text, finish, stream.prompt_tokens, run.completion_tokens
            )
        )

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        authorize(request)
        backend = backend_or_503()
        body = await _parse(request, protocol.ChatCompletionRequest, settings.max_body_bytes)
        _check_common(body, backend)
        prompt_ids = _render_chat(backend.tokenizer, body.messages)
        return await generate(
            request,
            backend,
            body,
            prompt_ids,
            "messages",
            "chatcmpl",
            _chat_events,
            protocol.chat_completion,
        )

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        authorize(request)
        backend = backend_or_503()
        body = await _parse(request, protocol.CompletionRequest, settings.max_body_bytes)
        _check_common(body, backend)
        prompt_ids = _encode_prompt(backend, body.prompt)
        return await generate(
            request,
            backend,
            body,
            prompt_ids,
            "prompt",
            "cmpl",
            _completion_events,
            protocol.completion,
        )

    return app


# --------------------------------------------------------------------------- request checks
async def _parse(request: Request, model: type[_Body], limit: int) -> _Body:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(
            413,
            f"request body is {declared} bytes; allowed: at most {limit}",
            code="body_too_large",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(
                413,
                f"request body exceeds {limit} bytes; allowed: at most {limit}",
                code="body_too_large",
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise APIError(
            400,
            f"request body is not valid UTF-8 (bad byte at offset {err.start}); "
            "allowed: UTF-8 JSON",
            code="invalid_utf8",
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise APIError(
            400,
            f"request body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise APIError(
            400,
            f"request body must be a JSON object, got {type(data).__name__}",
            code="invalid_json",
        )
    try:
        return model.model_validate_json(text)
    except ValidationError as err:
        raise describe_validation_error(err) from None


def _check_common(body: Any, backend: Backend) -> None:
    if body.model is not None and body.model != backend.model_name:
        raise APIError(
            404,
            f"the model {body.model!r} does not exist; allowed: {backend.model_name!r}",
            param="model",
            code="model_not_found",
        )
    problem = body.unsupported()
    if problem is not None:
        raise APIError(400, problem[1], param=problem[0], code="unsupported_value")


def _render_chat(tokenizer: Any, messages: list[protocol.ChatMessage]) -> list[int]:
    turns = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in messages
    ]
    if getattr(tokenizer, "chat_template", None) is None:
        text = "".join(f"{t['role']}: {t['content']}\n" for t in turns) + "assistant:"
        return list(tokenizer.encode(text))
    try:
        ids = tokenizer.apply_chat_template(
            turns, add_generation_prompt=True, tokenize=True, return_dict=False
        )
    except jinja2.TemplateError as err:
        raise APIError(
            400,
            f"messages: the model's chat template refused them: {err}",
            param="messages",
            code="invalid_messages",
        ) from None
    return list(ids)


def _encode_prompt(backend: Backend, prompt: str | list[str] | list[int]) -> list[int]:
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
        ids = [int(t) for t in prompt]
        bad = [t for t in ids if not 0 <= t < backend.vocab_size]
        if bad:
            raise APIError(
                400,
                f"prompt: token id {bad[0]} is out of range; allowed: 0..{backend.vocab_size - 1}",
                param="prompt",
                code="invalid_value",
            )
        return ids
    text = prompt if isinstance(prompt, str) else str(prompt[0])
    ids = list(backend.tokenizer.encode(text))
    if not ids:
        raise APIError(
            400,
            "prompt is empty; allowed: at least one token",
            param="prompt",
            code="invalid_value",
        )
    return ids


def _sampling(
    body: Any, prompt_tokens: int, max_model_len: int, prompt_param: str
) -> SamplingParams:
    if prompt_tokens >= max_model_len:
        raise APIError(
            400,
            f"{prompt_param}: the prompt is {prompt_tokens} tokens; this model's "
            f"context is {max_model_len} tokens (prompt plus output), so the prompt "
            f"must be at most {max_model_len - 1}",
            param=prompt_param,
            code="context_length_exceeded",
        )
    room = max_model_len - prompt_tokens
    limit = body.token_limit()
    if limit is not None and limit > room:
        name = (
            "max_completion_tokens"
            if getattr(body, "max_completion_tokens", None)
            else "max_tokens"
        )
        raise APIError(
            400,
            f"{name}={limit} is too large: the prompt uses {prompt_tokens} of "
            f"the {max_model_len}-token context; allowed: 1..{room}",
            param=name,
            code="context_length_exceeded",
        )
    max_tokens = room if limit is None else limit
    if body.min_tokens > max_tokens:
        raise APIError(
            400,
            f"min_tokens={body.min_tokens} exceeds max_tokens={max_tokens}; "
            f"allowed: 0..{max_tokens}",
            param="min_tokens",
            code="invalid_value",
        )
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=tuple(body.stop_list()),
        ignore_eos=body.ignore_eos,
        min_tokens=body.min_tokens,
    )


def _admit(engine: Engine, prompt_ids: list[int], params: SamplingParams) -> RequestStream:
    try:
        return engine.submit(prompt_ids, params)
    except QueueFullError as err:
        raise APIError(
            429,
            f"the server is at capacity ({err}); retry later",
            code="queue_full",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        ) from None
    except EngineStoppedError as err:
        raise APIError(
            503,
            f"the engine is not running ({err})",
            code="engine_stopped",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        ) from None


# --------------------------------------------------------------------------- generation runs
class _ClientGone(Exception):
    pass


class _Run:
    """One admitted request on the HTTP side: its deltas, its timings, its drain accounting."""

    def __init__(
        self, stream: RequestStream, submitted: float, state: ServerState, metrics: ServerMetrics
    ) -> None:
        self.stream, self.submitted, self.state, self.metrics = stream, submitted, state, metrics
        self.first_token: float | None = None
        self.completion_tokens = 0
        self.done = False
        state.active_requests += 1

    def note(self, delta: Delta) -> None:
        if self.first_token is None and delta.completion_tokens > 0:
            self.first_token = time.perf_counter()
        self.completion_tokens = delta.completion_tokens

    def close(self) -> None:
        if self.done:
            return
        self.done = True
        self.state.active_requests -= 1
        if not self.stream.finished:
            self.stream.cancel()
        self.metrics.observe_request(
            self.stream.prompt_tokens,
            self.completion_tokens,
            self.submitted,
            self.first_token,
            time.perf_counter(),
        )

    async def deltas(self) -> AsyncIterator[Delta]:
        async for delta in self.stream:
            self.note(delta)
            yield delta

    async def collect(self, request: Request) -> tuple[str, str]:
        parts: list[str] = []
        checked = time.monotonic()
        try:
            while True:
                try:
                    delta = await asyncio.wait_for(self.stream.next_delta(), timeout=0.5)
                except TimeoutError:
                    delta = None
                # Look for a gone client every half second, also while tokens keep coming: a
                # client that gave up must free its batch slot, not wait for the whole answer.
                if delta is None or time.monotonic() - checked >= 0.5:
                    checked = time.monotonic()
                    if await request.is_disconnected():
                        raise _ClientGone() from None
                if delta is None:
                    continue
                self.note(delta)
                parts.append(delta.text)
                if delta.finish_reason is not None:
                    return "".join(parts), _final_reason(delta)
        except _ClientGone:
            return "", "cancelled"  # nobody reads this response
        finally:
            self.close()


def _failure(delta: Delta) -> APIError:
    """Why a generation ended in "error" or "cancelled"; answered as JSON or as an SSE event."""
    if delta.finish_reason == "error":
        return APIError(500, delta.error or "generation failed", code="generation_failed")
    return APIError(
        503,
        "the request was cancelled because the server is shutting down",
        code="server_draining",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def _final_reason(delta: Delta) -> str:
    if delta.finish_reason in ("stop", "length"):
        return delta.finish_reason
    raise _failure(delta)


def _sse(events: AsyncIterator[dict[str, Any]], run: _Run) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        try:
            async for event in events:
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            run.close()  # also runs when the client disconnects: frees the engine slot

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _stream_error(delta: Delta) -> dict[str, Any]:
    err = _failure(delta)
    return protocol.error_body(err.message, error_type(err.status), err.param, err.code)


async def _chat_events(
    run: _Run, id_: str, model: str, include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    created = int(time.time())
    yield protocol.chat_chunk(id_, model, created, {"role": "assistant", "content": ""})
    async for delta in run.deltas():
        if delta.finish_reason in ("error", "cancelled"):
            yield _stream_error(delta)
            return
        if delta.text:
            yield protocol.chat_chunk(id_, model, created, {"content": delta.text})
        if delta.finish_reason is not None:
            yield protocol.chat_chunk(id_, model, created, {}, delta.finish_reason)
    if include_usage:
        yield protocol.chat_chunk(
            id_,
            model,
            created,
            None,
            usage_=protocol.usage(run.stream.prompt_tokens, run.completion_tokens),
        )


async def _completion_events(
    run: _Run, id_: str, model: str, include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    created = int(time.time())
    async for delta in run.deltas():
        if delta.finish_reason in ("error", "cancelled"):
            yield _stream_error(delta)
            return
        if delta.text or delta.finish_reason is not None:
            yield protocol.completion_chunk(id_, model, created, delta.text, delta.finish_reason)
    if include_usage:
        yield protocol.completion_chunk(
            id_,
            model,
            created,
            None,
            usage_=protocol.usage(run.stream.prompt_tokens, run.completion_tokens),
        )

"""The HTTP layer: routes, request checks, readiness and draining.

It talks to the engine only through `llmserve.engine_api.Engine` and to the wire format only
through `llmserve.protocol`; chat.py and completions.py shape the answers, generation.py runs
them, body.py reads bodies, prompts.py turns them into tokens. The model loads in a background
thread after the port opens, so /health answers at once and /ready turns true when the weights
are loaded and warmed."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from hmac import compare_digest
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from llmserve import __version__, chat, completions, protocol
from llmserve.body import parse
from llmserve.engine_api import Engine, EngineStats
from llmserve.errors import APIError, install_error_handlers
from llmserve.generation import (
    RunRegistry,
    admit,
    collect,
    retry_later,
    sse,
)
from llmserve.logs import log_access, request_id_of
from llmserve.metrics import ServerMetrics
from llmserve.params import (
    per_choice,
    sampling,
    structured,
    token_budget,
    tool_constraint,
)
from llmserve.prompts import (
    check_chars,
    check_token_ids,
    encode_text,
    in_thread,
    max_token_chars,
    render_chat,
)
from llmserve.settings import Settings, SettingsError
from llmserve.tool_parsers import ToolParser
from llmserve.tool_parsers.hermes import HermesParser

log = logging.getLogger("llmserve.app")

STATIC_DIR = Path(__file__).parent / "static"
BODY_TIMEOUT_S = 60.0  # server.py passes LLMSERVE_BODY_TIMEOUT_SECONDS
MAX_CHOICES = 256  # prompts x n in one completions request
MODEL_NAME_ECHO = 200  # characters of a wrong model name repeated in the error
_ROUTES = {
    "/",
    "/health",
    "/ready",
    "/ping",
    "/version",
    "/metrics",
    "/v1/models",
    "/v1/chat/completions",
    "/v1/completions",
    "/tokenize",
    "/detokenize",
}


@dataclass
class Backend:
    """What a loader hands the app once the model is ready."""

    engine: Engine
    tokenizer: Any
    model_name: str
    vocab_size: int
    tool_parser: ToolParser = field(default_factory=HermesParser)

    @cached_property
    def token_chars(self) -> int:
        return max_token_chars(self.tokenizer)

    @cached_property
    def token_text(self) -> Callable[[int], str]:
        tokenizer = self.tokenizer

        @lru_cache(maxsize=65536)
        def text(token_id: int) -> str:
            try:
                return str(tokenizer.decode([token_id], skip_special_tokens=False))
            except Exception:  # ids beyond the tokenizer (random weights) carry no text
                return ""

        return text


@dataclass
class ServerState:
    settings: Settings
    backend: Backend | None = None
    load_error: str | None = None
    draining: bool = False
    registry: RunRegistry = field(default_factory=RunRegistry)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def active_requests(self) -> int:
        return len(self.registry)

    def end_streams(self) -> int:
        """The drain deadline: every open run ends now with an error event / 503."""
        return self.registry.abort_all()

    @property
    def ready(self) -> bool:
        return self.backend is not None and not self.draining and self.backend.engine.alive()

    @property
    def engine_dead(self) -> bool:
        return self.backend is not None and not self.backend.engine.alive()


def _empty_stats() -> EngineStats:
    return EngineStats(0, 0, 0, 0)


def _route_label(path: str) -> str:
    if path in _ROUTES:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    return "other"


class _ResponseMiddleware:
    """Per response, in one wrapper of `send`: counts it by route and status for /metrics and
    writes its access record (llmserve.logs) with the request id, echoed back in X-Request-Id.
    A plain ASGI middleware, so streaming responses and client disconnects pass untouched."""

    def __init__(self, app: Any, metrics: Callable[[], ServerMetrics]) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = _route_label(path)
        request_id = request_id_of(scope.get("headers") or [])
        started_at = time.perf_counter()
        status: int | None = None

        async def recording_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                self.metrics().requests.labels(route, str(status)).inc()
                headers = [*(message.get("headers") or []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except Exception:
            # Starlette answers an unhandled error with a 500 outside this middleware.
            if status is None:
                self.metrics().requests.labels(route, "500").inc()
            raise
        finally:
            latency_ms = round((time.perf_counter() - started_at) * 1000, 1)
            log_access(scope.get("method", ""), path, route, status or 500, latency_ms, request_id)


def create_app(
    settings: Settings,
    load_backend: Callable[[], Backend],
    on_fatal: Callable[[str], None] | None = None,
    body_timeout_s: float = BODY_TIMEOUT_S,
) -> FastAPI:
    state = ServerState(settings=settings)
    metrics = ServerMetrics(
        lambda: state.backend.engine.stats() if state.backend else _empty_stats(),
        lambda: state.backend.model_name if state.backend else "",
    )

    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        def load() -> None:
            from llmserve.models import ModelLoadError  # torch-heavy: only once loading

            try:
                backend = load_backend()
                _ = backend.token_chars  # computed once, before the first request
            except (ModelLoadError, SettingsError) as err:
                # Expected: the message says what is wrong and what would work; no traceback.
                message = f"model load failed: {err}"
                loop.call_soon_threadsafe(setattr, state, "load_error", message)
                if on_fatal is not None:
                    loop.call_soon_threadsafe(on_fatal, message)  # server.fail logs it once
                else:
                    log.error("%s", message)
                return
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
    app.add_middleware(_ResponseMiddleware, metrics=lambda: metrics)
    install_error_handlers(app)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = STATIC_DIR / "index.html"
        if not page.is_file():
            raise APIError(404, "the chat page is not installed in this image")
        return FileResponse(page)

    def liveness() -> JSONResponse:
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

    @app.get("/health")
    async def health() -> JSONResponse:
        return liveness()

    @app.api_route("/ping", methods=["GET", "POST"])
    async def ping() -> JSONResponse:
        """vLLM's (and SageMaker's) liveness route: the same answer as /health."""
        return liveness()

    @app.get("/version")
    async def version() -> dict[str, str]:
        return {"version": __version__}

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
            raise retry_later(
                503, "the server is shutting down; retry on another replica", "server_draining"
            )
        if state.backend is None:
            raise retry_later(
                503,
                "the model is still loading" if state.load_error is None else state.load_error,
                "model_not_ready",
            )
        return state.backend

    def check_model(name: str | None, backend: Backend) -> None:
        if name is not None and name != backend.model_name:
            shown = name if len(name) <= MODEL_NAME_ECHO else name[:MODEL_NAME_ECHO] + "..."
            raise APIError(
                404,
                f"the model {shown!r} does not exist; allowed: {backend.model_name!r}",
                param="model",
                code="model_not_found",
            )

    def check_common(body: Any, backend: Backend) -> None:
        check_model(body.model, backend)
        problem = body.unsupported()
        if problem is not None:
            raise APIError(400, problem[1], param=problem[0], code="unsupported_value")

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorize(request)
        backend = backend_or_503()
        return protocol.model_list(backend.model_name, state.created, backend.engine.max_model_len)

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> dict[str, Any]:
        authorize(request)
        backend = backend_or_503()
        check_model(model_id, backend)
        return protocol.model_card(backend.model_name, state.created, backend.engine.max_model_len)

    async def read(request: Request, model_type: type[Any]) -> Any:
        return await parse(request, model_type, settings.max_body_bytes, body_timeout_s)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        authorize(request)
        backend = backend_or_503()
        body = await read(request, protocol.ChatCompletionRequest)
        check_common(body, backend)
        engine = backend.engine
        mode = chat.ToolMode.of(body)
        constraint = tool_constraint(body) if mode.kind in ("named", "required") else None
        fmt = structured(body)
        if constraint is not None and fmt is not None:
            raise APIError(
                400,
                "response_format and a forced tool_choice both constrain the answer; give one",
                param="response_format",
                code="unsupported_value",
            )
        chars = sum(len(m.text()) for m in body.messages)
        check_chars(chars, engine.max_model_len, backend.token_chars, "messages")
        prompt_ids = await in_thread(
            render_chat,
            backend.tokenizer,
            body.messages,
            body.tools if mode.shows_tools else None,
            body.chat_template_kwargs,
        )
        max_tokens = token_budget(body, len(prompt_ids), engine.max_model_len, "messages")
        top = (body.top_logprobs or 0) if body.logprobs else None
        params = sampling(
            body,
            max_tokens=max_tokens,
            vocab_size=backend.vocab_size,
            logprobs=top,
            structured_output=constraint or fmt,
        )
        n = body.choices_per_prompt
        runs = admit(
            engine, [(prompt_ids, p) for p in per_choice(params, n)], state.registry, metrics
        )
        id_ = protocol.new_id("chatcmpl")
        if body.stream:
            include, continuous = protocol.stream_usage(body.stream_options)
            return sse(
                chat.frames(
                    runs,
                    id_,
                    backend.model_name,
                    mode,
                    backend.tool_parser,
                    top,
                    backend.token_text,
                    include,
                    continuous,
                )
            )
        deltas = await collect(runs, request)
        return JSONResponse(
            chat.reply(
                id_,
                backend.model_name,
                deltas,
                mode,
                backend.tool_parser,
                top,
                backend.token_text,
                len(prompt_ids),
            )
        )

    @app.post("/v1/completions")
    async def completions_route(request: Request) -> Response:
        authorize(request)
        backend = backend_or_503()
        body = await read(request, protocol.CompletionRequest)
        check_common(body, backend)
        engine = backend.engine
        given = body.prompts()
        n = body.choices_per_prompt
        if len(given) * n > MAX_CHOICES:
            raise APIError(
                400,
                f"prompt: {len(given)} prompts x n={n} is {len(given) * n} choices; allowed: "
                f"at most {MAX_CHOICES}",
                param="prompt",
                code="invalid_value",
            )
        for item in given:
            if isinstance(item, str):
                check_chars(len(item), engine.max_model_len, backend.token_chars, "prompt")
        prompts = await in_thread(_completion_prompts, backend, given)
        score_only = bool(body.echo) and body.max_tokens == 0
        opts = completions.Options(bool(body.echo), body.logprobs, score_only)
        fmt = structured(body)
        requests = []
        for prompt in prompts:
            budget = token_budget(body, len(prompt.ids), engine.max_model_len, "prompt")
            params = sampling(
                body,
                max_tokens=max(1, budget),
                vocab_size=backend.vocab_size,
                logprobs=body.logprobs,
                prompt_logprobs=body.logprobs if body.echo else None,
                structured_output=fmt,
            )
            requests.extend((prompt.ids, p) for p in per_choice(params, n))
        runs = admit(engine, requests, state.registry, metrics)
        id_ = protocol.new_id("cmpl")
        if body.stream:
            include, continuous = protocol.stream_usage(body.stream_options)
            return sse(
                completions.frames(
                    runs,
                    id_,
                    backend.model_name,
                    prompts,
                    n,
                    opts,
                    backend.token_text,
                    include,
                    continuous,
                )
            )
        deltas = await collect(runs, request)
        return JSONResponse(
            completions.reply(id_, backend.model_name, prompts, n, deltas, opts, backend.token_text)
        )

    from llmserve.tokenize_routes import add_tokenize_routes

    add_tokenize_routes(app, authorize, backend_or_503, check_model, read)
    return app


def _completion_prompts(backend: Backend, given: list[str | list[int]]) -> list[completions.Prompt]:
    """Blocking (runs in a worker thread): each prompt as ids, with its text for echo."""
    out = []
    for item in given:
        if isinstance(item, str):
            ids = encode_text(backend.tokenizer, item)
            text = item
        else:
            ids = check_token_ids(item, backend.vocab_size, "prompt")
            text = backend.tokenizer.decode(ids, skip_special_tokens=False)
        if not ids:
            raise APIError(
                400,
                "prompt is empty; allowed: at least one token",
                param="prompt",
                code="invalid_value",
            )
        out.append(completions.Prompt(ids, text))
    return out

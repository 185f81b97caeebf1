"""Run the app under uvicorn with a graceful drain on SIGTERM.

Kubernetes sends SIGTERM and, after terminationGracePeriodSeconds, SIGKILL. On the first SIGTERM
we report not-ready (so the Service stops routing here) and refuse new generations with 503,
let in-flight requests finish for up to `drain_seconds`, then stop uvicorn and exit 0. uvicorn's
own handler would close the listening socket at once and re-raise the signal (exit status
-15), which is why we replace it. At the drain deadline, streams still running end with an error
event and `[DONE]` (the app pushes a final "cancelled" delta into each) before uvicorn closes
their connections.

Three settings are read here from the environment until settings.py carries them:
LLMSERVE_HEADER_TIMEOUT_SECONDS (default 30: a connection whose request line and headers are not
complete by then is closed, so slow clients cannot hold connections open),
LLMSERVE_BODY_TIMEOUT_SECONDS (default 60: a body not fully received by then is answered 408),
and LLMSERVE_TOOL_PARSER (auto | hermes | glm, see llmserve/tool_parsers)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from llmserve import compile_cache
from llmserve.app import Backend, ServerState, create_app
from llmserve.engine import ContinuousBatchingEngine
from llmserve.models import load_model, pick_device
from llmserve.quantization import Int8WeightOnlyLinear
from llmserve.settings import Settings, SettingsError
from llmserve.tool_parsers import pick_parser

log = logging.getLogger("llmserve.server")
progress = logging.getLogger("llmserve.progress")  # what a start is doing, for people watching
CPU_FIXED_ROWS = 1


def _has_int8(model: Any) -> bool:
    return any(isinstance(m, Int8WeightOnlyLinear) for m in model.modules())


DRAIN_GRACE_S = 5.0  # after the deadline: time for the final error events to go out


def header_deadline_protocol(timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline on the request line and headers: uvicorn has a
    keep-alive timeout between requests, but none while a request's head trickles in."""

    class HeaderDeadlineH11(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None
        _seen_cycle: Any = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._seen_cycle = self.cycle
            self._head_timer = self.loop.call_later(timeout_s, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.cycle is self._seen_cycle and not self.transport.is_closing():
                log.info("closing a connection whose request head took over %.0f s", timeout_s)
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not self._seen_cycle:  # a request's head is complete
                self._disarm()
                self._seen_cycle = self.cycle

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadlineH11


def build_backend(settings: Settings) -> Backend:
    # Refuse GPU-only settings before loading: a large model takes minutes to load.
    on_cuda = pick_device(settings.device).type == "cuda"
    if settings.cuda_graphs == "on" and not on_cuda:
        raise SettingsError(
            "LLMSERVE_CUDA_GRAPHS=on but the model runs on the CPU; "
            "allowed: auto or off without a GPU"
        )
    graphs = settings.cuda_graphs == "on" or (settings.cuda_graphs == "auto" and on_cuda)
    if settings.compile == "on" and not graphs:
        raise SettingsError(
            "LLMSERVE_COMPILE=on compiles the step that CUDA graphs replay, and "
            "CUDA graphs are off here; allowed: auto or off"
        )
    if settings.tensor_parallel > 1 and settings.quantization != "none":
        raise SettingsError(  # before any worker rank is started
            f"LLMSERVE_QUANTIZATION={settings.quantization!r} with LLMSERVE_TENSOR_PARALLEL="
            f"{settings.tensor_parallel}: tensor parallel shards float weights only; allowed: none"
        )
    tp = None
    if settings.tensor_parallel > 1:  # its import pulls in transformers' model code: only then
        from llmserve import tensor_parallel

        tp = tensor_parallel.launch(settings)
    loaded = (tp.load_model if tp else load_model)(
        settings.model,
        settings.device,
        settings.dtype,
        settings.model_name,
        settings.tokenizer,
        cpu_weights=settings.cpu_weights,
        report=progress.info,
        quantization=settings.quantization,
    )
    max_model_len = settings.max_model_len or loaded.max_model_len
    # On the CPU, a model with int8 Linears (cpu_weights.py) decodes one-row batches from the
    # fixed buffers too (no graphs, no compile): eager but without the growing cache's
    # per-step concatenation (SmolLM2-135M, 1 thread: 51 ms a step against ~70 ms).
    cpu_fixed = not on_cuda and _has_int8(loaded.model)
    compile_volume = Path(settings.compile_cache_dir) if settings.compile_cache_dir else None
    if compile_volume is not None:  # before the warm-up compiles: load what a pod published
        compile_key = compile_cache.cache_key(
            settings.model or loaded.name,
            loaded.device,
            extra=f"{loaded.dtype}:{settings.quantization}:tp{settings.tensor_parallel}",
        )
        compile_cache.configure(compile_volume, compile_key, compile_cache.LOCAL_ROOT)
    progress.info("warming up")
    engine = ContinuousBatchingEngine(
        loaded.model,
        loaded.tokenizer,
        max_model_len=max_model_len,
        eos_token_ids=loaded.eos_token_ids,
        max_batch=settings.max_batch,
        max_queue=settings.max_queue,
        graph_max_batch=(
            min(settings.graph_max_batch, settings.max_batch)
            if graphs
            else CPU_FIXED_ROWS
            if cpu_fixed
            else 0
        ),
        cuda_graphs=graphs,
        compile_step=graphs and settings.compile != "off",
        kv_cache=settings.kv_cache,
        kv_block_size=settings.kv_block_size,
        kv_cache_tokens=settings.kv_cache_tokens or None,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        prefix_caching=settings.prefix_caching != "off",
        reuse_last_prompt=settings.prefix_caching == "on"
        or (settings.prefix_caching == "auto" and not on_cuda),
        overlap_steps=settings.overlap_steps == "on"
        or (settings.overlap_steps == "auto" and on_cuda),
    )
    if tp is not None:
        tp.attach(engine)  # rank 0 mirrors its runner's calls; other ranks serve them in here
    engine.start()
    if compile_volume is not None:
        compile_cache.publish(compile_volume, compile_key)
    # The grammar library's view of the tokenizer takes about a second to build: build it in the
    # background now, not in the first structured request on the event loop (which waits for
    # it if it comes sooner), and without delaying readiness.
    threading.Thread(
        target=engine.grammars.token_bytes, name="llmserve-grammar", daemon=True
    ).start()
    vocab = int(loaded.model.get_input_embeddings().num_embeddings)
    log.info(
        "serving %s on %s (%s), context %d tokens, batch %d, queue %d",
        loaded.name,
        loaded.device,
        loaded.dtype,
        max_model_len,
        settings.max_batch,
        settings.max_queue,
    )
    parser = pick_parser(loaded.tokenizer, settings.tool_parser)
    return Backend(
        engine=engine,
        tokenizer=loaded.tokenizer,
        model_name=loaded.name,
        vocab_size=vocab,
        tool_parser=parser,
    )


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServerState, drain_seconds: float) -> None:
        super().__init__(config)
        self.state = state
        self.drain_seconds = drain_seconds
        self.exit_code = 0
        self._drain_requested = False
        self._drain_started: float | None = None
        self._ended_at: float | None = None
        self._announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_requested:  # a second signal: stop waiting
            log.warning("second signal %s: exiting without waiting for requests", sig)
            self.should_exit = True
            self.force_exit = True
            return
        log.info("signal %s: draining for up to %.0f s", sig, self.drain_seconds)
        self._drain_requested = True

    def fail(self, message: str) -> None:
        log.error("%s; exiting", message)
        self.exit_code = 1
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if not self._announced and self.state.ready:
            self._announced = True
            host = self.config.host
            shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
            progress.info("ready: http://%s:%d/", shown, self.config.port)
        if self._drain_requested and not self.should_exit:
            self._tick_drain()
        return await super().on_tick(counter)

    def _tick_drain(self) -> None:
        if self._drain_started is None:
            self._drain_started = time.monotonic()
            self.state.draining = True
        busy = self.state.active_requests
        waited = time.monotonic() - self._drain_started
        if busy == 0:
            log.info("drained after %.1f s", waited)
            self.should_exit = True
        elif waited >= self.drain_seconds and self._ended_at is None:
            ended = self.state.end_streams()
            log.warning("drain deadline reached: ending %d requests with an error", ended)
            self._ended_at = time.monotonic()
        elif self._ended_at is not None and time.monotonic() - self._ended_at >= DRAIN_GRACE_S:
            log.warning("%d requests still open after the drain grace; exiting", busy)
            self.should_exit = True


def serve(settings: Settings) -> int:
    server_ref: list[DrainingServer] = []

    def on_fatal(message: str) -> None:
        server_ref[0].fail(message)

    header_timeout = settings.header_timeout_seconds
    body_timeout = settings.body_timeout_seconds
    app = create_app(
        settings, lambda: build_backend(settings), on_fatal=on_fatal, body_timeout_s=body_timeout
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Our own access log (llmserve.logs) instead of uvicorn's, and uvicorn's other loggers
        # propagate to the root handler cli.py set up, in the format LLMSERVE_LOG_FORMAT chose.
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=5,
        lifespan="on",
        http=header_deadline_protocol(header_timeout),
    )
    server = DrainingServer(config, app.state.server, settings.drain_seconds)
    server_ref.append(server)
    asyncio.run(server.serve())
    return server.exit_code

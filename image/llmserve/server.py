"""Run the app under uvicorn with a graceful drain on SIGTERM.

Kubernetes sends SIGTERM and, after terminationGracePeriodSeconds, SIGKILL. On the first SIGTERM
we report not-ready (so the Service stops routing here) and refuse new generations with 503,
let in-flight requests finish for up to `drain_seconds`, then stop uvicorn and exit 0. uvicorn's
own handler would close the listening socket at once and re-raise the signal (exit status
-15), which is why we replace it."""

from __future__ import annotations

import asyncio
import logging
import time
from types import FrameType

import uvicorn

from llmserve.app import Backend, ServerState, create_app
from llmserve.engine import ContinuousBatchingEngine
from llmserve.models import load_model, pick_device
from llmserve.settings import Settings, SettingsError

log = logging.getLogger("llmserve.server")


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
    loaded = load_model(
        settings.model, settings.device, settings.dtype, settings.model_name, settings.tokenizer
    )
    max_model_len = settings.max_model_len or loaded.max_model_len
    engine = ContinuousBatchingEngine(
        loaded.model,
        loaded.tokenizer,
        max_model_len=max_model_len,
        eos_token_ids=loaded.eos_token_ids,
        max_batch=settings.max_batch,
        max_queue=settings.max_queue,
        graph_max_batch=min(settings.graph_max_batch, settings.max_batch) if graphs else 0,
        cuda_graphs=graphs,
        compile_step=graphs and settings.compile != "off",
    )
    engine.start()
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
    return Backend(
        engine=engine, tokenizer=loaded.tokenizer, model_name=loaded.name, vocab_size=vocab
    )


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServerState, drain_seconds: float) -> None:
        super().__init__(config)
        self.state = state
        self.drain_seconds = drain_seconds
        self.exit_code = 0
        self._drain_requested = False
        self._drain_started: float | None = None

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
        if self._drain_requested and not self.should_exit:
            self._tick_drain()
        return await super().on_tick(counter)

    def _tick_drain(self) -> None:
        if self._drain_started is None:
            self._drain_started = time.monotonic()
            self.state.draining = True
        busy = self.state.active_requests
        waited = time.monotonic() - self._drain_started
        if busy == 0 or waited >= self.drain_seconds:
            if busy:
                log.warning("drain deadline reached with %d requests in flight", busy)
            else:
                log.info("drained after %.1f s", waited)
            self.should_exit = True


def serve(settings: Settings) -> int:
    server_ref: list[DrainingServer] = []

    def on_fatal(message: str) -> None:
        server_ref[0].fail(message)

    app = create_app(settings, lambda: build_backend(settings), on_fatal=on_fatal)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    server = DrainingServer(config, app.state.server, settings.drain_seconds)
    server_ref.append(server)
    asyncio.run(server.serve())
    return server.exit_code

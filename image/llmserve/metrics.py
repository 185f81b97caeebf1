"""Prometheus metrics under vLLM's names, in a registry per app (tests run several servers).

Autoscalers (KEDA in vLLM's production-stack), the Gateway API Inference Extension and the
public Grafana dashboards query vLLM's names with a `model_name` label, so those are the names:
`vllm:num_requests_running`, `vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc` (a
fraction 0..1, despite the name, as vLLM's: blocks in use with the paged KV cache), the prefix
cache's `vllm:prefix_cache_queries_total` and `vllm:prefix_cache_hits_total` (tokens) and
`vllm:num_preemptions_total`, the latency histograms and the token and finished-request
counters. Ours is kept only where vLLM has nothing: `llmserve_requests_total` counts HTTP
responses by route and status. Process metrics come from prometheus_client's ProcessCollector;
the `_created` series are turned off (they double every counter's series)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from llmserve.engine_api import EngineStats

prometheus_client.disable_created_metrics()

# vLLM's buckets for these histograms (seconds), so dashboards' bucket queries line up.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
FINISHED_REASONS = {"stop": "stop", "length": "length", "cancelled": "abort", "error": "error"}


class ServerMetrics:
    def __init__(self, stats: Callable[[], EngineStats], model_name: Callable[[], str]) -> None:
        self.registry = CollectorRegistry()
        self._stats = stats
        self._model_name = model_name
        r = self.registry
        ProcessCollector(registry=r)
        label = ["model_name"]
        self.requests = Counter(
            "llmserve_requests",
            "HTTP responses by route and status code",
            ["route", "status"],
            registry=r,
        )
        self.running = Gauge(
            "vllm:num_requests_running", "Requests in the running batch", label, registry=r
        )
        self.waiting = Gauge(
            "vllm:num_requests_waiting", "Requests waiting for a batch slot", label, registry=r
        )
        self.kv_cache_usage = Gauge(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage as a fraction 0..1: paged cache, blocks in use / blocks; padded "
            "cache, tokens held / (max batch x context length)",
            label,
            registry=r,
        )
        self.prefix_cache_queries = Counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in prompt tokens looked up (paged KV cache)",
            label,
            registry=r,
        )
        self.prefix_cache_hits = Counter(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in prompt tokens found cached (paged KV cache)",
            label,
            registry=r,
        )
        self.preemptions = Counter(
            "vllm:num_preemptions",
            "Requests preempted (blocks taken back, recomputed later; paged KV cache)",
            label,
            registry=r,
        )
        # The engine's running totals already counted into the three counters above, per model.
        self._counted: dict[str, tuple[int, ...]] = {}
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Prompt tokens processed", label, registry=r
        )
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Tokens generated", label, registry=r
        )
        self.request_success = Counter(
            "vllm:request_success",
            "Finished requests by finish reason (stop, length, abort, error)",
            [*label, "finished_reason"],
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "vllm:time_to_first_token_seconds",
            "Submit to first generated token",
            label,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.inter_token_latency = Histogram(
            "vllm:inter_token_latency_seconds",
            "Gap between consecutive generated tokens",
            label,
            buckets=ITL_BUCKETS,
            registry=r,
        )
        self._itl_children: dict[str, Any] = {}
        self.time_per_output_token = Histogram(
            "vllm:request_time_per_output_token_seconds",
            "Mean gap between generated tokens after the first, per request",
            label,
            buckets=ITL_BUCKETS,
            registry=r,
        )
        self.e2e_latency = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Submit to last token",
            label,
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            "vllm:request_queue_time_seconds",
            "Submit to joining the running batch (observed where the engine reports it)",
            label,
            buckets=REQUEST_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        stats = self._stats()
        model = self._model_name()
        self.waiting.labels(model).set(stats.queue_depth)
        self.running.labels(model).set(stats.running)
        self.kv_cache_usage.labels(model).set(stats.cache_usage)
        self._count_engine_totals(model, stats)
        for histogram in (
            self.time_to_first_token,
            self.inter_token_latency,
            self.time_per_output_token,
            self.e2e_latency,
            self.queue_time,
        ):
            histogram.labels(model)  # listed (at 0) before the first request
        self.prompt_tokens.labels(model)
        self.generation_tokens.labels(model)
        return generate_latest(self.registry)

    def _count_engine_totals(self, model: str, stats: EngineStats) -> None:
        """The engine keeps running totals; the counters get what was added since the last
        scrape (a total that went down is an engine that started over: counted afresh)."""
        counters = (self.prefix_cache_queries, self.prefix_cache_hits, self.preemptions)
        totals = (stats.prefix_cache_queries, stats.prefix_cache_hits, stats.preemptions)
        counted = self._counted.get(model, (0,) * len(totals))
        if any(t < c for t, c in zip(totals, counted, strict=True)):
            counted = (0,) * len(totals)
        for counter, total, before in zip(counters, totals, counted, strict=True):
            counter.labels(model).inc(total - before)
        self._counted[model] = totals

    def observe_gaps(self, gap: float, tokens: int) -> None:
        """`tokens` new tokens arrived `gap` seconds after the previous ones: that many gaps."""
        if tokens <= 0:
            return
        # One labelled child per model, looked up once: labels() takes a lock and builds a key,
        # and this runs for every chunk of every stream on the event loop.
        model = self._model_name()
        histogram = self._itl_children.get(model)
        if histogram is None:
            histogram = self._itl_children[model] = self.inter_token_latency.labels(model)
        for _ in range(min(tokens, 64)):  # a merged backlog: cap the work, not the meaning
            histogram.observe(gap / tokens)

    def observe_request(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        submitted: float,
        first_token: float | None,
        finished: float,
        finish_reason: str,
        queued_s: float | None = None,
    ) -> None:
        model = self._model_name()
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.generation_tokens.labels(model).inc(completion_tokens)
        reason = FINISHED_REASONS.get(finish_reason, "abort")
        self.request_success.labels(model, reason).inc()
        self.e2e_latency.labels(model).observe(finished - submitted)
        if queued_s is not None:
            self.queue_time.labels(model).observe(queued_s)
        if first_token is not None:
            self.time_to_first_token.labels(model).observe(first_token - submitted)
            if completion_tokens > 1:
                self.time_per_output_token.labels(model).observe(
                    (finished - first_token) / (completion_tokens - 1)
                )

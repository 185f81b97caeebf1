"""Prometheus metrics, in a registry per app so several servers (tests) never share counters."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llmserve.engine_api import EngineStats

_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
    80.0,
)


class ServerMetrics:
    def __init__(self, stats: Callable[[], EngineStats]) -> None:
        self.registry = CollectorRegistry()
        self._stats = stats
        r = self.registry
        self.requests = Counter(
            "llmserve_requests",
            "HTTP requests by route and status code",
            ["route", "status"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "llmserve_prompt_tokens", "Prompt tokens processed", registry=r
        )
        self.generation_tokens = Counter(
            "llmserve_generation_tokens", "Tokens generated", registry=r
        )
        self.time_to_first_token = Histogram(
            "llmserve_time_to_first_token_seconds",
            "Submit to first generated token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.time_per_output_token = Histogram(
            "llmserve_time_per_output_token_seconds",
            "Mean gap between generated tokens after the first, per request",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "llmserve_queue_depth", "Requests waiting for a batch slot", registry=r
        )
        self.running = Gauge(
            "llmserve_running_batch_size", "Requests in the running batch", registry=r
        )
        self.cache_usage = Gauge(
            "llmserve_cache_usage_ratio",
            "KV-cache tokens held / (max batch x context length)",
            registry=r,
        )

    def render(self) -> bytes:
        stats = self._stats()
        self.queue_depth.set(stats.queue_depth)
        self.running.set(stats.running)
        self.cache_usage.set(stats.cache_usage)
        return generate_latest(self.registry)

    def observe_request(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        submitted: float,
        first_token: float | None,
        finished: float,
    ) -> None:
        self.prompt_tokens.inc(prompt_tokens)
        self.generation_tokens.inc(completion_tokens)
        if first_token is not None:
            self.time_to_first_token.observe(first_token - submitted)
            if completion_tokens > 1:
                self.time_per_output_token.observe(
                    (finished - first_token) / (completion_tokens - 1)
                )

"""An unexpected failure is answered with a 500 and still counted in /metrics (the 500 is sent by
Starlette's error middleware, outside ours, so ours must count it on the way out)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from llmserve.app import _empty_stats, _ResponseMiddleware
from llmserve.metrics import ServerMetrics
from prometheus_client import generate_latest

from tests.llm_server import RunningServer


def test_a_crash_inside_the_app_is_counted_as_500() -> None:
    metrics = ServerMetrics(_empty_stats, lambda: "m")
    app = FastAPI()
    app.add_middleware(_ResponseMiddleware, metrics=lambda: metrics)  # as create_app does

    @app.get("/v1/models")
    async def boom() -> None:
        raise RuntimeError("unexpected")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/models").status_code == 500
    text = generate_latest(metrics.registry).decode()
    assert 'llmserve_requests_total{route="/v1/models",status="500"} 1.0' in text


def test_vllm_names_with_model_label_process_metrics_and_no_created_series(
    tiny_server: RunningServer,
) -> None:
    with tiny_server.http() as http:
        assert (
            http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 3}).status_code == 200
        )
        text = http.get("/metrics").text
    names = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:request_success_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:request_queue_time_seconds_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert name in names, name
    assert not any(name.endswith("_created") for name in names)
    assert not any(
        name.startswith("llmserve_") and name != "llmserve_requests_total" for name in names
    )  # ours only where vLLM has nothing
    for line in text.splitlines():
        if line.startswith("vllm:"):
            assert 'model_name="random-tiny"' in line, line

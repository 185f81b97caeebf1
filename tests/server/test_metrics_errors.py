"""An unexpected failure is answered with a 500 and still counted in /metrics (the 500 is sent by
Starlette's error middleware, outside ours, so ours must count it on the way out)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from llmserve.app import _empty_stats, _MetricsMiddleware
from llmserve.metrics import ServerMetrics
from prometheus_client import generate_latest


def test_a_crash_inside_the_app_is_counted_as_500() -> None:
    metrics = ServerMetrics(_empty_stats)
    app = FastAPI()
    app.add_middleware(_MetricsMiddleware, metrics=lambda: metrics)  # as create_app does

    @app.get("/v1/models")
    async def boom() -> None:
        raise RuntimeError("unexpected")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/models").status_code == 500
    text = generate_latest(metrics.registry).decode()
    assert 'llmserve_requests_total{route="/v1/models",status="500"} 1.0' in text

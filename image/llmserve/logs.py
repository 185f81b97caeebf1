"""Logging for the server: plain lines for a terminal, one JSON object per line for a cluster's
log pipeline (LLMSERVE_LOG_FORMAT=json), and an access log that says which request it was.

Why our own access log instead of uvicorn's: uvicorn's has no request id or latency and logs every
probe. Here each response is one `llmserve.access` record with request id, method, route, status
and latency; Kubernetes' probes and Prometheus' scrapes (/health, /ready, /metrics, /ping) are
logged at DEBUG only, so they don't drown the requests at INFO.
"""

from __future__ import annotations

import logging
import re
import uuid

from pythonjsonlogger.json import JsonFormatter

ACCESS = logging.getLogger("llmserve.access")
PROBE_PATHS = frozenset({"/health", "/ready", "/metrics", "/ping"})
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def configure(level: str, fmt: str) -> None:
    """Root handler in the chosen format; uvicorn's loggers propagate to it (see server.py)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-Id when it is a sane token, else a new one."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
    return uuid.uuid4().hex


def log_access(
    method: str, path: str, route: str, status: int, latency_ms: float, request_id: str
) -> None:
    """One access record: text for people, the same fields as keys for a JSON pipeline."""
    level = logging.DEBUG if path in PROBE_PATHS else logging.INFO
    ACCESS.log(
        level,
        "%s %s %d %.1f ms id=%s",
        method,
        path,
        status,
        latency_ms,
        request_id,
        extra={
            "request_id": request_id,
            "method": method,
            "route": route,
            "status": status,
            "latency_ms": latency_ms,
        },
    )

"""Every metric the dashboard and the ScaledObject query exists: the server's own from a real
server's /metrics (random:tiny, started as the image starts it), the GPU ones in the DCGM
exporter's documented set.

A name the server does not export makes a panel empty or, worse, the autoscaler blind (KEDA
reads no series and never scales). This test needs the server with vLLM's metric names
(vllm:num_requests_waiting and the rest, with a model_name label)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from components.k8s.monitoring import DASHBOARD_FILE
from tests.llm_server import RunningServer, start_server
from tests.stack.stack_values import planned

# What the DCGM exporter exports by default: UK8S docs administercluster/gpu-monitor.md,
# "5. DCGM 常见指标" (utilisation 5.1, frame buffer 5.2); the dashboard uses only these.
DCGM_METRICS = frozenset(
    {
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_FB_USED",
    }
)
# A metric selector as the dashboard writes them: the name, then its label matchers in braces
# (every selector carries braces, even empty ones, so this finds them all; checked below).
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\{")
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")
_WHOLE_SELECTOR = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*\{[^}]*\}")
_OUR_PREFIXES = ("vllm:", "llmserve_", "DCGM_")


def dashboard_queries() -> list[str]:
    dashboard = json.loads(Path(DASHBOARD_FILE).read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            queries.append(variable["query"]["query"])
    return queries


def scaled_object_queries() -> list[str]:
    scaled = planned("prod").one("kubernetes:keda.sh/v1alpha1:ScaledObject")
    return [t["metadata"]["query"] for t in scaled.inputs["spec"]["triggers"]]


def metric_names(query: str) -> set[str]:
    names = set(_SELECTOR.findall(query)) | set(_LABEL_VALUES.findall(query))
    # A selector written without braces would escape the pattern above: refuse it.
    bare = [
        word
        for word in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", _WHOLE_SELECTOR.sub("", query))
        if word.startswith(_OUR_PREFIXES) and word not in _LABEL_VALUES.findall(query)
    ]
    assert not bare, f"{query!r}: write every selector with braces: {bare}"
    return names


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that has answered one request: labelled counters (request_success_total by
    finished_reason) list a series only once something has been counted, as in production."""
    running = start_server(tmp_path_factory.mktemp("metrics"), "random:tiny")
    try:
        with running.http() as http:
            model = http.get("/v1/models").json()["data"][0]["id"]
            answer = http.post(
                "/v1/completions", json={"model": model, "prompt": "hello", "max_tokens": 2}
            )
            assert answer.status_code == 200, answer.text
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def exported(server: RunningServer) -> set[str]:
    """Every sample name the server's /metrics lists (histogram _bucket/_sum/_count and counter
    _total lines included, as Prometheus stores them)."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_the_queries_name_metrics() -> None:
    """Guard against a vacuous pass: the extraction finds what the panels are about."""
    names = set().union(*map(metric_names, dashboard_queries()))
    assert {
        "vllm:num_requests_waiting",
        "vllm:time_to_first_token_seconds_bucket",
        "DCGM_FI_DEV_GPU_UTIL",
    } <= names
    assert metric_names(scaled_object_queries()[0]) == {"vllm:num_requests_waiting"}


def test_every_server_metric_queried_is_exported(exported: set[str]) -> None:
    queried = set().union(*map(metric_names, dashboard_queries() + scaled_object_queries()))
    server_side = {n for n in queried if n not in DCGM_METRICS and not n.startswith("DCGM_")}
    missing = sorted(server_side - exported)
    assert not missing, f"queried but not in the server's /metrics: {missing}"


def test_the_server_labels_its_vllm_metrics_with_the_model(server: RunningServer) -> None:
    """The queries select on model_name; a metric without that label would match nothing."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    waiting = [s for s in samples if s.name == "vllm:num_requests_waiting"]
    assert waiting and all("model_name" in s.labels for s in waiting)


def test_every_gpu_metric_queried_is_one_dcgm_exports() -> None:
    queried = set().union(*map(metric_names, dashboard_queries()))
    gpu = {n for n in queried if n.startswith("DCGM_")}
    assert gpu and gpu <= DCGM_METRICS, sorted(gpu - DCGM_METRICS)

"""`Monitoring`: the Grafana dashboard as a ConfigMap, and a PodMonitor for the Prometheus
Operator.

- The dashboard (components/k8s/dashboards/llm-uk8s-serving.json) ships in a ConfigMap labelled
  `grafana_dashboard: "1"`, the label Grafana's dashboard sidecar watches by default (the
  grafana chart's `sidecar.dashboards.label` / `labelValue`); a Grafana without the sidecar can
  import the same JSON by hand.
- The PodMonitor (only where the cluster runs the Prometheus Operator, whose CRD it is) scrapes
  the inference pods' named port `http` at /metrics; the scrape annotations on the pods serve
  annotation-based Prometheus configurations instead. The operator is the cluster's (UK8S's
  monitoring center), of no documented version: tests validate the PodMonitor against the CRD
  schemas of prometheus-operator v0.57.0 and v0.80.1 (tests/k8s/crd_schemas/SOURCES.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.k8s.conventions import (
    PART_OF,
    child_options,
    kubernetes_provider,
    object_labels,
    require_label_value,
)
from components.k8s.inference import METRICS_PATH

TYPE_TOKEN = "llm-uk8s:k8s:Monitoring"
DASHBOARD_FILE = Path(__file__).resolve().parent / "dashboards" / "llm-uk8s-serving.json"
DASHBOARD_KEY = "llm-uk8s-serving.json"
GRAFANA_SIDECAR_LABEL = {"grafana_dashboard": "1"}
POD_MONITOR_API_VERSION = "monitoring.coreos.com/v1"
# The server's container port name (components/k8s/inference.py pod_spec): /metrics is there.
METRICS_PORT_NAME = "http"
SCRAPE_INTERVAL = "15s"


def dashboard_json() -> str:
    """The dashboard as committed; parsed and re-dumped so a broken file fails here."""
    return json.dumps(json.loads(DASHBOARD_FILE.read_text()), indent=2, sort_keys=True)


@dataclass
class MonitoringArgs:
    namespace: pulumi.Input[str]
    # The inference pods' selector labels (InferenceService.selector).
    pod_selector: Mapping[str, str]
    # Where the dashboard ConfigMap goes (the Grafana sidecar must search it).
    dashboard_namespace: pulumi.Input[str]
    pod_monitor: bool = False
    instance: str = PART_OF
    version: str = "unknown"
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        require_label_value("instance", self.instance)
        require_label_value("version", self.version)


def pod_monitor_spec(selector: Mapping[str, str], namespace: str) -> dict[str, Any]:
    return {
        "selector": {"matchLabels": dict(selector)},
        "namespaceSelector": {"matchNames": [namespace]},
        "podMetricsEndpoints": [
            {"port": METRICS_PORT_NAME, "path": METRICS_PATH, "interval": SCRAPE_INTERVAL}
        ],
    }


class Monitoring(pulumi.ComponentResource):
    """Dashboard ConfigMap (+ PodMonitor)."""

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        provider = kubernetes_provider(opts)
        super().__init__(TYPE_TOKEN, name, None, opts)
        labels = object_labels("llmserve", name, instance=args.instance, version=args.version)
        self.dashboard = k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            metadata={
                "namespace": args.dashboard_namespace,
                "labels": {**labels, **GRAFANA_SIDECAR_LABEL},
            },
            data={DASHBOARD_KEY: dashboard_json()},
            opts=child_options(self, provider),
        )
        self.pod_monitor: k8s.apiextensions.CustomResource | None = None
        if args.pod_monitor:
            self.pod_monitor = k8s.apiextensions.CustomResource(
                f"{name}-pods",
                api_version=POD_MONITOR_API_VERSION,
                kind="PodMonitor",
                metadata={"namespace": args.namespace, "labels": labels},
                spec=pulumi.Output.from_input(args.namespace).apply(
                    lambda ns: pod_monitor_spec(args.pod_selector, ns)
                ),
                opts=child_options(self, provider),
            )
        self.register_outputs({})

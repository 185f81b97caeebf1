"""Scrapers reach the metrics port and nothing else: PodMonitors and ServiceMonitors scrape a
named port at /metrics (no relabelling that moves the target), and a NetworkPolicy rule that
admits another namespace lists the ports it admits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationPolicy

from .k8s import get, items

POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
METRICS_PATH = "/metrics"
_ENDPOINTS = {POD_MONITOR: "podMetricsEndpoints", SERVICE_MONITOR: "endpoints"}


def check_monitors(resource_type: str, props: Mapping[str, Any], report: ReportViolation) -> None:
    field = _ENDPOINTS.get(resource_type)
    if field is None:
        return
    endpoints = items(get(props, "spec", field))
    if not endpoints:
        report(f"{resource_type.rsplit(':', 1)[1]} has no {field}")
    for endpoint in endpoints:
        if not isinstance(endpoint, Mapping):
            continue
        if not endpoint.get("port") or "targetPort" in endpoint:
            report(f"{field}: scrape a named port ('port'), not a number or targetPort")
        if endpoint.get("path", METRICS_PATH) != METRICS_PATH:
            report(f"{field}: path {endpoint.get('path')!r}; only {METRICS_PATH} is metrics")
        for relabel in items(endpoint.get("relabelings")):
            if isinstance(relabel, Mapping) and relabel.get("targetLabel") == "__address__":
                report(f"{field}: a relabeling rewrites __address__ (another port or host)")


def check_namespace_rules(
    resource_type: str, props: Mapping[str, Any], report: ReportViolation
) -> None:
    if resource_type != NETWORK_POLICY:
        return
    for rule in items(get(props, "spec", "ingress")):
        if not isinstance(rule, Mapping):
            continue
        admits_namespace = any(
            isinstance(peer, Mapping) and "namespaceSelector" in peer
            for peer in items(rule.get("from"))
        )
        if admits_namespace and not items(rule.get("ports")):
            report("an ingress rule admits another namespace to every port; list its ports")


metrics_port_only = ResourceValidationPolicy(
    name="scrapers-reach-the-metrics-port-only",
    description=(
        "PodMonitors/ServiceMonitors scrape a named port at /metrics; a NetworkPolicy rule that "
        "admits another namespace names its ports."
    ),
    validate=[
        lambda args, report: check_monitors(args.resource_type, args.props, report),
        lambda args, report: check_namespace_rules(args.resource_type, args.props, report),
    ],
)

"""Containers have CPU and memory limits; serving containers have readiness and liveness probes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationPolicy

from .k8s import SERVING_TYPES, get, name_of, pod_containers


def check_limits(resource_type: str, props: Mapping[str, Any], report: ReportViolation) -> None:
    for container in pod_containers(resource_type, props):
        limits = get(container, "resources", "limits")
        missing = [
            r for r in ("cpu", "memory") if not isinstance(limits, Mapping) or r not in limits
        ]
        if missing:
            report(f"container '{name_of(container)}' has no {' or '.join(missing)} limit")


def check_probes(resource_type: str, props: Mapping[str, Any], report: ReportViolation) -> None:
    if resource_type not in SERVING_TYPES:
        return
    for container in pod_containers(resource_type, props, include_init=False):
        missing = [p for p in ("readinessProbe", "livenessProbe") if not container.get(p)]
        if missing:
            report(f"container '{name_of(container)}' has no {' or '.join(missing)}")


container_limits = ResourceValidationPolicy(
    name="containers-have-limits",
    description="Every container (init containers too) sets CPU and memory limits.",
    validate=lambda args, report: check_limits(args.resource_type, args.props, report),
)

serving_probes = ResourceValidationPolicy(
    name="serving-containers-have-probes",
    description="Containers of Deployments and StatefulSets have readiness and liveness probes.",
    validate=lambda args, report: check_probes(args.resource_type, args.props, report),
)

"""Autoscalers are bounded: a KEDA ScaledObject names a Deployment, keeps at least one replica
and never asks for more than the pack's `maxReplicas` (the GPUs a pool can give)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from .k8s import get

SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
# The stack config's own ceiling for replicas (components/stack/config.py REPLICAS).
DEFAULT_MAX_REPLICAS = 64


def _whole(value: Any) -> int | None:
    """A replica count as the engine hands it (numbers may arrive as floats)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if float(value).is_integer() else None


def check(
    resource_type: str,
    props: Mapping[str, Any],
    report: ReportViolation,
    max_replicas: int = DEFAULT_MAX_REPLICAS,
) -> None:
    if resource_type != SCALED_OBJECT:
        return
    spec = get(props, "spec") or {}
    if get(spec, "scaleTargetRef", "kind") not in (None, "Deployment"):
        report("ScaledObject must scale a Deployment (scaleTargetRef.kind)")
    maximum = _whole(get(spec, "maxReplicaCount"))
    minimum = _whole(get(spec, "minReplicaCount"))
    if maximum is None:
        report("ScaledObject sets no maxReplicaCount: KEDA's default (100) is no GPU pool's size")
        return
    if maximum > max_replicas:
        report(
            f"ScaledObject maxReplicaCount {maximum} is above {max_replicas} (policy config "
            "maxReplicas: the replicas the GPU pool can give)"
        )
    if minimum is None or minimum < 1:
        report(
            "ScaledObject minReplicaCount must be 1 or more: scaling to zero means a cold start "
            "that loads the weights for minutes"
        )
    elif minimum > maximum:
        report(f"ScaledObject minReplicaCount {minimum} is above maxReplicaCount {maximum}")


def _validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
    limit = args.get_config().get("maxReplicas", DEFAULT_MAX_REPLICAS)
    check(args.resource_type, args.props, report, int(limit))


bounded_autoscalers = ResourceValidationPolicy(
    name="scaledobject-replicas-bounded",
    description="KEDA ScaledObjects scale a Deployment between 1 and maxReplicas replicas.",
    validate=_validate,
    config_schema=PolicyConfigSchema(
        properties={"maxReplicas": {"type": "integer", "default": DEFAULT_MAX_REPLICAS}},
    ),
)

"""Model volumes are Retain: deleting a claim or the stack must not delete downloaded weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationPolicy

from .k8s import PERSISTENT_VOLUME, get


def check(resource_type: str, props: Mapping[str, Any], report: ReportViolation) -> None:
    if resource_type != PERSISTENT_VOLUME:
        return
    policy = get(props, "spec", "persistentVolumeReclaimPolicy")
    if policy != "Retain":
        report(
            f"PersistentVolume reclaim policy is {policy!r}; model volumes must say 'Retain' "
            "explicitly so the weights outlive the claim"
        )


retained_volumes = ResourceValidationPolicy(
    name="model-volumes-retain",
    description="PersistentVolumes (the model store) use persistentVolumeReclaimPolicy: Retain.",
    validate=lambda args, report: check(args.resource_type, args.props, report),
)

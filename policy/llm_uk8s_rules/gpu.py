"""GPU workloads request `nvidia.com/gpu` (as a limit) and tolerate the GPU taint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from .k8s import (
    DAEMONSET,
    DEFAULT_GPU_TAINT_KEY,
    GPU_RESOURCE,
    containers,
    get,
    items,
    name_of,
    pod_spec,
)


def _gpu_amount(container: Mapping[str, Any], section: str) -> Any:
    return get(container, "resources", section, GPU_RESOURCE)


def tolerates(spec: Mapping[str, Any], taint_key: str) -> bool:
    for toleration in items(spec.get("tolerations")):
        if not isinstance(toleration, Mapping):
            continue
        key, operator = toleration.get("key"), toleration.get("operator", "Equal")
        if operator == "Exists" and key in (None, "", taint_key):
            return True  # an empty key with Exists tolerates every taint
        if key == taint_key and operator == "Equal":
            return True
    return False


def targets_gpu_nodes(spec: Mapping[str, Any]) -> bool:
    """A nodeSelector that names GPUs (e.g. llm-uk8s/gpu, nvidia.com/gpu.present)."""
    selector = spec.get("nodeSelector")
    if not isinstance(selector, Mapping):
        return False
    return any("gpu" in str(k).lower() or "nvidia" in str(k).lower() for k in selector)


def wants_cuda(container: Mapping[str, Any]) -> bool:
    return any(
        isinstance(e, Mapping) and e.get("name") == "LLMSERVE_DEVICE" and e.get("value") == "cuda"
        for e in items(container.get("env"))
    )


def check(
    resource_type: str,
    props: Mapping[str, Any],
    report: ReportViolation,
    taint_key: str = DEFAULT_GPU_TAINT_KEY,
) -> None:
    spec = pod_spec(resource_type, props)
    if spec is None:
        return
    gpu_containers = []
    for container in containers(spec):
        requested = _gpu_amount(container, "requests")
        limited = _gpu_amount(container, "limits")
        if requested is not None and limited is None:
            report(
                f"container '{name_of(container)}' requests {GPU_RESOURCE} without a limit; "
                "extended resources are scheduled by their limit"
            )
        if limited is not None:
            gpu_containers.append(container)
        elif wants_cuda(container):
            report(
                f"container '{name_of(container)}' runs on CUDA but has no "
                f"{GPU_RESOURCE} limit: it would share a GPU nobody scheduled for it"
            )
    if gpu_containers and not tolerates(spec, taint_key):
        report(f"pod requests {GPU_RESOURCE} but does not tolerate the GPU taint '{taint_key}'")
    if not gpu_containers and targets_gpu_nodes(spec) and resource_type != DAEMONSET:
        report(
            f"pod is pinned to GPU nodes but requests no {GPU_RESOURCE}: it blocks GPU "
            "capacity without using it (node agents belong in DaemonSets)"
        )


def _validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
    taint_key = args.get_config().get("gpuTaintKey", DEFAULT_GPU_TAINT_KEY)
    check(args.resource_type, args.props, report, taint_key)


gpu_workloads = ResourceValidationPolicy(
    name="gpu-workloads-request-gpus-and-tolerate-taint",
    description="GPU workloads request nvidia.com/gpu as a limit and tolerate the GPU node taint.",
    validate=_validate,
    config_schema=PolicyConfigSchema(
        properties={"gpuTaintKey": {"type": "string", "default": DEFAULT_GPU_TAINT_KEY}},
    ),
)

"""Reading Kubernetes objects as policies see them: the resource's camelCase inputs.

Pulumi hands a policy proxies (Mapping/Sequence, not dict/list) and raises UnknownValueError
when a policy touches a value only known after apply; these helpers only use the abstract types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_TEMPLATE = ("spec", "template", "spec")
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:apps/v1:Deployment": _TEMPLATE,
    "kubernetes:apps/v1:StatefulSet": _TEMPLATE,
    "kubernetes:apps/v1:DaemonSet": _TEMPLATE,
    "kubernetes:apps/v1:ReplicaSet": _TEMPLATE,
    "kubernetes:batch/v1:Job": _TEMPLATE,
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}
# Long-running servers: what a failed probe would protect.
SERVING_TYPES = frozenset({"kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet"})
DAEMONSET = "kubernetes:apps/v1:DaemonSet"
SERVICE = "kubernetes:core/v1:Service"
PERSISTENT_VOLUME = "kubernetes:core/v1:PersistentVolume"
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_TAINT_KEY = GPU_RESOURCE


def get(value: Any, *path: str) -> Any:
    """Walk mappings; None as soon as a key is missing."""
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def items(value: Any) -> list[Any]:
    """A list field as a list (None, or a non-list by mistake, gives [])."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return []


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    path = POD_SPEC_PATHS.get(resource_type)
    if path is None:
        return None
    spec = get(props, *path)
    return spec if isinstance(spec, Mapping) else None


def pod_labels(resource_type: str, props: Mapping[str, Any]) -> Any:
    """The labels a Service selector matches: the metadata beside the pod spec (a Pod's own, a
    template's for controllers), found through POD_SPEC_PATHS so no kind is special-cased."""
    path = POD_SPEC_PATHS.get(resource_type)
    if path is None:
        return None
    return get(props, *path[:-1], "metadata", "labels")


def containers(spec: Mapping[str, Any], *, include_init: bool = True) -> list[Mapping[str, Any]]:
    found = items(spec.get("containers"))
    if include_init:
        found += items(spec.get("initContainers"))
    return [c for c in found if isinstance(c, Mapping)]


def pod_containers(
    resource_type: str, props: Mapping[str, Any], *, include_init: bool = True
) -> list[Mapping[str, Any]]:
    """The containers of a workload's pod spec; [] for anything that is not a workload."""
    spec = pod_spec(resource_type, props)
    return [] if spec is None else containers(spec, include_init=include_init)


def name_of(container: Mapping[str, Any]) -> str:
    return str(container.get("name", "?"))


def type_token(manifest: Mapping[str, Any]) -> str:
    """The Pulumi type of a plain manifest (apiVersion + kind), e.g. for checking rendered YAML."""
    api_version = str(manifest.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    return f"kubernetes:{group or 'core'}/{version}:{manifest.get('kind')}"

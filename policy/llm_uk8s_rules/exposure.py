"""A Service reachable from outside the cluster (NodePort, LoadBalancer) fronts only servers that
demand an API key, and that key comes from a Kubernetes Secret."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy import ReportViolation, StackValidationArgs, StackValidationPolicy

from .k8s import SERVICE, containers, get, items, name_of, pod_labels, pod_spec

EXPOSED_TYPES = ("NodePort", "LoadBalancer")
KEY_FILE_ENV = "LLMSERVE_API_KEY_FILE"
KEY_ENV = "LLMSERVE_API_KEY"

Resource = tuple[str, Mapping[str, Any], str | None]  # (type, props, urn)


def _secret_volumes(spec: Mapping[str, Any]) -> set[str]:
    return {
        str(v.get("name"))
        for v in items(spec.get("volumes"))
        if isinstance(v, Mapping) and isinstance(v.get("secret"), Mapping)
    }


def has_api_key(spec: Mapping[str, Any], container: Mapping[str, Any]) -> bool:
    """The key as a file from a Secret volume, or as an env var from secretKeyRef."""
    env = {str(e.get("name")): e for e in items(container.get("env")) if isinstance(e, Mapping)}
    if KEY_ENV in env and get(env[KEY_ENV], "valueFrom", "secretKeyRef"):
        return True
    key_file = get(env.get(KEY_FILE_ENV), "value")
    if not isinstance(key_file, str):
        return False
    secret_volumes = _secret_volumes(spec)
    for mount in items(container.get("volumeMounts")):
        if not isinstance(mount, Mapping) or mount.get("name") not in secret_volumes:
            continue
        path = str(mount.get("mountPath", "")).rstrip("/")
        if path and key_file.startswith(path + "/"):
            return True
    return False


def _selects(selector: Mapping[str, Any], labels: Any) -> bool:
    if not isinstance(labels, Mapping):
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def _same_namespace(a: Any, b: Any) -> bool:
    """Unknown (not yet created) namespaces are given the benefit of the doubt."""
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return True


def check(resources: Iterable[Resource], report: ReportViolation) -> None:
    resources = list(resources)
    # (pod spec, namespace, pod labels) of every workload, read once for all Services.
    workloads = [
        (spec, get(props, "metadata", "namespace"), pod_labels(rtype, props))
        for rtype, props, _ in resources
        if (spec := pod_spec(rtype, props)) is not None
    ]
    for rtype, props, urn in resources:
        if rtype != SERVICE or get(props, "spec", "type") not in EXPOSED_TYPES:
            continue
        service = f"Service '{get(props, 'metadata', 'name') or urn}'"
        selector = get(props, "spec", "selector")
        if not isinstance(selector, Mapping) or not selector:
            report(
                f"{service} is exposed outside the cluster without a pod selector; "
                "its backends cannot be checked for an API key",
                urn,
            )
            continue
        namespace = get(props, "metadata", "namespace")
        backends = [
            spec
            for spec, workload_ns, labels in workloads
            if _same_namespace(namespace, workload_ns) and _selects(selector, labels)
        ]
        if not backends:
            report(
                f"{service} is exposed outside the cluster but selects no workload of this "
                "stack, so no API key can be verified",
                urn,
            )
        for spec in backends:
            for container in containers(spec, include_init=False):
                if not has_api_key(spec, container):
                    report(
                        f"{service} is exposed outside the cluster but container "
                        f"'{name_of(container)}' behind it takes no API key from a Secret "
                        f"({KEY_FILE_ENV} on a Secret volume, or {KEY_ENV} via secretKeyRef)",
                        urn,
                    )


def _validate(args: StackValidationArgs, report: ReportViolation) -> None:
    check(((r.resource_type, r.props, r.urn) for r in args.resources), report)


exposed_services_need_api_key = StackValidationPolicy(
    name="exposed-service-requires-api-key",
    description="NodePort and LoadBalancer Services front only servers that require an API key "
    "taken from a Kubernetes Secret.",
    validate=_validate,
)

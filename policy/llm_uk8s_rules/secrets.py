"""No secret in a plain env value: env values end up in `kubectl get -o yaml`, in the state file
in clear, and in every pod description. Secrets come via secretKeyRef or a mounted file."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationPolicy

from .k8s import items, name_of, pod_containers

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE)", re.I)
# Names that carry a reference to a secret, not the secret itself.
_REFERENCE_SUFFIXES = ("_FILE", "_PATH", "_DIR")
_SECRET_VALUE = re.compile(
    r"^(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,})$"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)


def env_problem(entry: Mapping[str, Any]) -> str | None:
    """Why one env entry leaks a secret, or None."""
    name = str(entry.get("name", ""))
    value = entry.get("value")
    if not isinstance(value, str) or not value:
        return None  # valueFrom, or empty
    if _SECRET_VALUE.search(value):
        return f"env {name} holds what looks like a credential"
    if _SECRET_NAME.search(name) and not name.upper().endswith(_REFERENCE_SUFFIXES):
        return f"env {name} is set to a plain value"
    return None


def check(resource_type: str, props: Mapping[str, Any], report: ReportViolation) -> None:
    for container in pod_containers(resource_type, props):
        for entry in items(container.get("env")):
            if isinstance(entry, Mapping) and (problem := env_problem(entry)):
                report(
                    f"container '{name_of(container)}': {problem}; use "
                    "valueFrom.secretKeyRef or a file from a Secret volume"
                )


no_plain_secrets = ResourceValidationPolicy(
    name="no-secret-in-plain-env",
    description="Secrets reach containers via Secret references or files, never plain env values.",
    validate=lambda args, report: check(args.resource_type, args.props, report),
)

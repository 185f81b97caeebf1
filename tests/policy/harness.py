"""Call the pack's policies the way the Pulumi engine does, without the engine.

Import as `tests.policy.harness`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy import (
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy.llm_uk8s_rules import ALL_POLICIES
from policy.llm_uk8s_rules.k8s import type_token

POLICIES: dict[str, Policy] = {p.name: p for p in ALL_POLICIES}


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def resource_violations(
    policy: Policy,
    resource_type: str,
    props: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
) -> list[str]:
    assert isinstance(policy, ResourceValidationPolicy)
    found: list[str] = []
    args = ResourceValidationArgs(
        resource_type,
        props,
        f"urn:test::{resource_type}::r",
        "r",
        _opts(),
        None,
        dict(config or {}),
    )
    policy.validate(args, lambda message, urn=None: found.append(message))
    return found


def stack_violations(
    policy: Policy, resources: Iterable[tuple[str, Mapping[str, Any]]]
) -> list[tuple[str, str | None]]:
    assert isinstance(policy, StackValidationPolicy)
    found: list[tuple[str, str | None]] = []
    policy_resources = [
        PolicyResource(
            rtype, props, f"urn:test::{rtype}::r{i}", f"r{i}", _opts(), None, None, [], {}
        )
        for i, (rtype, props) in enumerate(resources)
    ]
    policy.validate(
        StackValidationArgs(policy_resources),
        lambda message, urn=None: found.append((message, urn)),
    )
    return found


def all_violations(manifests: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every policy of the pack over a set of rendered objects."""
    typed = [(type_token(m), m) for m in manifests]
    problems: list[str] = []
    for policy in ALL_POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            for rtype, props in typed:
                name = props.get("metadata", {}).get("name")
                problems += [
                    f"{policy.name} {rtype} {name}: {v}"
                    for v in resource_violations(policy, rtype, props)
                ]
        else:
            problems += [f"{policy.name}: {m}" for m, _ in stack_violations(policy, typed)]
    return problems


def deployment(**container_overrides: Any) -> dict[str, Any]:
    """A Deployment that passes every policy; tests break one thing at a time."""
    container: dict[str, Any] = {
        "name": "server",
        "image": "uhub.service.ucloud.cn/llm-uk8s/llmserve:0.1.0",
        "ports": [{"name": "http", "containerPort": 7861}],
        "env": [
            {"name": "LLMSERVE_API_KEY_FILE", "value": "/var/run/secrets/api-key/api-key"},
            {"name": "LLMSERVE_DEVICE", "value": "cuda"},
        ],
        "resources": {
            "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "1"},
            "limits": {"cpu": "8", "memory": "48Gi", "nvidia.com/gpu": "1"},
        },
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}},
        "volumeMounts": [{"name": "api-key", "mountPath": "/var/run/secrets/api-key"}],
    }
    container.update(container_overrides)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "llm", "namespace": "llm"},
        "spec": {
            "selector": {"matchLabels": {"app": "llm"}},
            "template": {
                "metadata": {"labels": {"app": "llm", "tier": "serving"}},
                "spec": {
                    "nodeSelector": {"llm-uk8s/gpu": "true"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                    "containers": [container],
                    "volumes": [{"name": "api-key", "secret": {"secretName": "llm-api-key"}}],
                },
            },
        },
    }


def pod_spec_of(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]

"""The pack passes what the components render for every stack, and catches a broken render."""

from __future__ import annotations

import copy

import pytest

from tests.k8s.stacks import STACKS, run_stack
from tests.policy.harness import all_violations


@pytest.fixture(scope="module", params=sorted(STACKS))
def manifests(request: pytest.FixtureRequest) -> list[dict]:
    return run_stack(request.param).manifests()


def test_rendered_stack_has_no_violations(manifests: list[dict]) -> None:
    assert all_violations(manifests) == []


def test_the_same_check_catches_an_exposed_service_without_key(manifests: list[dict]) -> None:
    """Guard against a vacuous pass: drop the key from the server and expose it."""
    broken = copy.deepcopy(manifests)
    for m in broken:
        if m["kind"] == "Deployment":
            container = m["spec"]["template"]["spec"]["containers"][0]
            container["env"] = [e for e in container["env"] if "API_KEY" not in e["name"]]
        if m["kind"] == "Service" and m["spec"]["type"] == "ClusterIP" and "7861" in str(m):
            m["spec"]["type"] = "NodePort"
    assert any(v.startswith("exposed-service-requires-api-key") for v in all_violations(broken))

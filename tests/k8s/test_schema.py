"""Every rendered object validates against the Kubernetes OpenAPI schema, strictly."""

from __future__ import annotations

import copy

import pytest

from tests.k8s.validate import assert_valid_manifests, schema_errors, supported_versions
from tools.mock_runtime import Plan

# The oldest schema kubernetes-validate ships and the version the stacks default to.
VERSIONS = ["1.28.0", "1.30.0"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_of_every_stack_is_schema_valid(
    stack_plan: tuple[str, Plan], version: str
) -> None:
    _, plan = stack_plan
    count = assert_valid_manifests(plan.manifests(), version)
    assert count >= 6  # PV, PVC, Secret, Deployment, Service, PDB at least


def test_the_versions_we_check_are_shipped() -> None:
    shipped = {v.rsplit(".", 1)[0] for v in supported_versions()}
    assert {v.rsplit(".", 1)[0] for v in VERSIONS} <= shipped


def test_strict_validation_catches_a_misspelt_field(stack_plan: tuple[str, Plan]) -> None:
    """The check above could pass vacuously; show that it rejects what a typo produces."""
    _, plan = stack_plan
    deployment = next(m for m in plan.manifests() if m["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbes"] = container.pop("readinessProbe")
    errors = schema_errors(broken, "1.30.0")
    assert errors and "readinessProbes" in errors[0]


def test_a_wrong_type_is_caught(stack_plan: tuple[str, Plan]) -> None:
    _, plan = stack_plan
    service = next(m for m in plan.manifests() if m["kind"] == "Service")
    broken = copy.deepcopy(service)
    broken["spec"]["ports"][0]["port"] = "seven-eight-six-one"
    assert schema_errors(broken, "1.30.0")


def test_the_secret_mask_has_one_source() -> None:
    """The unmasking above must recognise exactly what the mock runtime writes: the same object,
    imported, not a copy of the string that could drift."""
    import tools.mock_runtime
    from tests.k8s import validate

    assert validate.SECRET_MASK is tools.mock_runtime.SECRET_MASK

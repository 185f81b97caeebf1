"""Fixtures for the stack tests: plans shared across modules (see `planned`)."""

from __future__ import annotations

import pytest

from tests.stack.stack_values import STACKS, planned
from tools.mock_runtime import Plan


@pytest.fixture(scope="module", params=STACKS)
def stack_plan(request: pytest.FixtureRequest) -> tuple[str, Plan]:
    return request.param, planned(request.param)


@pytest.fixture(scope="module")
def dev() -> Plan:
    return planned("dev")


@pytest.fixture(scope="module")
def prod() -> Plan:
    return planned("prod")


@pytest.fixture(scope="module")
def local() -> Plan:
    return planned("local")

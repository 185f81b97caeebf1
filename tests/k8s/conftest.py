"""Fixtures: each stack's component graph, rendered once per session under the mock runtime."""

from __future__ import annotations

import pytest

from tests.k8s.stacks import STACKS, run_default
from tools.mock_runtime import Plan


@pytest.fixture(scope="module", params=sorted(STACKS))
def stack_plan(request: pytest.FixtureRequest) -> tuple[str, Plan]:
    return request.param, run_default(request.param)

"""Fixtures for the stack tests."""

from __future__ import annotations

import pytest

from tests.stack.stack_values import STACKS


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return request.param

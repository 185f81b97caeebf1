"""What the stack tests share: a stack's config as the program would read it (for tests that
call `parse` directly), and each stack's whole program planned once."""

from __future__ import annotations

import functools
import json
from typing import Any

from components.stack import config as stack_config
from tools.mock_runtime import Plan, RecordedResource
from tools.plan import plan_stack
from tools.stack_config import load_stack, stacks

STACKS = tuple(stacks())
UCLOUD = "pulumi-python:dynamic/ucloud:"


def raw_values(stack: str, **overrides: Any) -> dict[str, Any]:
    """Short key -> value, as `components.stack.config.load` hands them to `parse`."""
    settings = load_stack(stack, overrides=overrides)
    prefix = settings.project + ":"
    values: dict[str, Any] = {}
    for key, value in settings.config.items():
        if not key.startswith(prefix):
            continue
        short = key[len(prefix) :]
        values[short] = json.loads(value) if short in stack_config.ARRAY_KEYS else value
    return values


@functools.cache
def planned(stack: str) -> Plan:
    """plan_stack(stack) without overrides, run once per session: each run executes the whole
    program under mocks, and the tests only read the plan (they must not mutate it)."""
    return plan_stack(stack)


def fed_by(consumer: RecordedResource, field: str, producer: RecordedResource) -> bool:
    """`field` of consumer is an output of producer (a real data edge, not only depends_on)."""
    return producer.urn in consumer.property_dependencies.get(field, [])

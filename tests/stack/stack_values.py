"""A stack's config as the program would read it, for tests that call `parse` directly."""

from __future__ import annotations

import json
from typing import Any

from components import config as stack_config
from tools.stack_config import load_stack

STACKS = ("dev", "prod", "local")


def raw_values(stack: str, **overrides: Any) -> dict[str, Any]:
    """Short key -> value, as `components.config.load` hands them to `parse`."""
    settings = load_stack(stack, overrides=overrides)
    prefix = settings.project + ":"
    values: dict[str, Any] = {}
    for key, value in settings.config.items():
        if not key.startswith(prefix):
            continue
        short = key[len(prefix) :]
        values[short] = json.loads(value) if short in stack_config.ARRAY_KEYS else value
    return values

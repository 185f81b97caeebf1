"""A UCloudApi that can only read: preflight must never buy, change or delete anything.

Why a wrapper and not a promise: every preflight call goes through `ReadOnlyApi`, which refuses
any action that is not Describe*, Get* or List* before a request leaves the machine. The tests
also record every action the fake receives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from components.ucloud.api import UCloudApi

READ_ONLY_PREFIXES = ("Describe", "Get", "List")


class WriteRefusedError(RuntimeError):
    """Preflight code tried an action that is not read-only (a bug, never a user error)."""


def action_name(sdk_method: str) -> str:
    """describe_available_instance_types -> DescribeAvailableInstanceTypes (close enough for
    the prefix check; the SDK's own action names carry acronyms such as UK8S)."""
    return "".join(part.capitalize() for part in sdk_method.split("_"))


def is_read_only(action: str) -> bool:
    return re.match(rf"^({'|'.join(READ_ONLY_PREFIXES)})[A-Z0-9]", action) is not None


@dataclass(frozen=True)
class ReadOnlyApi:
    """Typed SDK calls and untyped invokes, read-only actions only, retried like the providers."""

    api: UCloudApi = field(repr=False)

    @property
    def region(self) -> str:
        return self.api.region

    def call(self, service: str, method: str, args: dict[str, Any]) -> dict[str, Any]:
        action = action_name(method)
        if not is_read_only(action):
            raise WriteRefusedError(f"preflight never sends {action}: it is not read-only")
        return self.api.call(service, method, args)

    def invoke(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        if not is_read_only(action):
            raise WriteRefusedError(f"preflight never sends {action}: it is not read-only")
        return self.api.invoke(action, args)

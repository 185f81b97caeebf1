"""Polling a UCloud resource until it reaches a wanted state."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.ucloud.errors import ResourceFailedError, WaitTimeoutError

GONE = "<gone>"


@dataclass(frozen=True)
class WaitPolicy:
    """When to poll: a first delay (UK8S needs minutes before it answers), then every interval."""

    timeout: float = 600.0
    first_delay: float = 0.0
    interval: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class Observation:
    """One poll: the state seen, UCloud's explanation on failure, and the outputs read.

    Keeping the outputs lets create use the last poll instead of describing once more.
    """

    state: str
    detail: str = ""
    outputs: Mapping[str, Any] = field(default_factory=dict)


def wait_for_state(
    policy: WaitPolicy,
    kind: str,
    resource_id: str,
    poll: Callable[[], Observation],
    ready: Collection[str],
    failed: Collection[str] = (),
) -> Observation:
    """Poll until a ready state and return that poll; raise on a failed state or timeout."""
    deadline = policy.clock() + policy.timeout
    if policy.first_delay > 0:
        policy.sleep(policy.first_delay)
    last = Observation("<not polled>")
    while True:
        last = poll()
        if last.state in ready:
            return last
        if last.state in failed:
            raise ResourceFailedError(kind, resource_id, last.state, last.detail)
        if policy.clock() + policy.interval > deadline:
            raise WaitTimeoutError(kind, resource_id, "/".join(ready), last.state, policy.timeout)
        policy.sleep(policy.interval)

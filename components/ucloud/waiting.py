"""Polling a UCloud resource until it reaches a wanted state."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

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
    """One poll: the state seen and, on failure, UCloud's explanation."""

    state: str
    detail: str = ""


def wait_for_state(
    policy: WaitPolicy,
    kind: str,
    resource_id: str,
    poll: Callable[[], Observation],
    ready: Collection[str],
    failed: Collection[str] = (),
) -> Observation:
    """Poll until a ready state; raise on a failed state or when the timeout passes."""
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

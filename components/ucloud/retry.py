"""Bounded exponential backoff for UCloud API calls.

The SDK's own retry re-sends at once with no delay, which makes throttling worse,
so its retries are switched off and this policy is used instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from components.ucloud.errors import is_transient

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient API errors."""

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def delays(self) -> Iterator[float]:
        """Delays between attempts: base, 2*base, 4*base ... capped at max_delay."""
        for attempt in range(self.attempts - 1):
            yield min(self.max_delay, self.base_delay * (2**attempt))

    def run(self, call: Callable[[], T], before_retry: Callable[[], None] | None = None) -> T:
        """Run call, retrying transient errors; before_retry runs before each new try."""
        delays = self.delays()
        while True:
            try:
                return call()
            except Exception as error:
                delay = next(delays, None)
                if delay is None or not is_transient(error):
                    raise
                self.sleep(delay)
                if before_retry is not None:
                    before_retry()

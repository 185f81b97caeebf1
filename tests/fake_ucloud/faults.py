"""Faults a test can inject into the fake UCloud API."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Fault:
    """Answer `action` badly `times` times.

    after_apply=True performs the action first and then loses the answer, like a
    client that crashed or a connection that dropped after UCloud did the work.
    http_status != 0 answers with that HTTP status instead of a RetCode.
    """

    action: str
    times: int = 1
    code: int = 5000
    message: str = "Internal error, please retry"
    after_apply: bool = False
    http_status: int = 0

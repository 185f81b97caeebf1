"""Faults a test can inject into the fake UCloud API."""

from __future__ import annotations

from dataclasses import dataclass

from tests.fake_ucloud.protocol import NEUTRAL_MESSAGE, SERVICE_UNAVAILABLE


@dataclass
class Fault:
    """Answer `action` badly `times` times.

    after_apply=True performs the action first and then loses the answer, like a
    client that crashed or a connection that dropped after UCloud did the work.
    http_status != 0 answers with that HTTP status instead of a RetCode.
    The default, 150 "服务目前不可用...请稍后重试" (summary/public.md), is a documented
    transient error, sent with a neutral message.
    """

    action: str
    times: int = 1
    code: int = SERVICE_UNAVAILABLE
    message: str = NEUTRAL_MESSAGE
    after_apply: bool = False
    http_status: int = 0

"""Errors the UCloud providers raise, and how SDK errors are classified.

Pulumi shows an exception's text to the user, so each error carries the
resource id, its last state and UCloud's own message.
"""

from __future__ import annotations

import re

import requests

# The SDK treats RetCode > 2000 as service-side and retryable (ucloud.core.exc).
SDK_RETRYABLE_MIN_RET_CODE = 2000
RETRYABLE_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504})
# Common RetCodes worth another try (UCloudDoc-Team/api summary/public.md): 153 "API 请求被限流"
# (throttled), 150 "服务不可用" (service unavailable, retry later), 110 (request timed out).
THROTTLED_RET_CODES = frozenset({153})
TRANSIENT_RET_CODES = frozenset({110, 150, 153})
# "Not found" has no shared RetCode: each action has its own. Keyed by the SDK's
# RetCodeException.action; sources per code in components/ucloud/README.md.
NOT_FOUND_RET_CODES: dict[str, frozenset[int]] = {
    # terraform-provider-ucloud ucloud/service_ucloud_vpc.go:89
    "DescribeNATGW": frozenset({54002}),
    # terraform-provider-ucloud ucloud/service_ucloud_uk8s.go:36
    "ListUK8SClusterNodeV2": frozenset({94007}),
    # terraform-provider-ucloud ucloud/service_ucloud_ufs.go:33
    "DescribeUFSVolumeMountpoint": frozenset({65126}),
}
# Fallbacks only, for codes no source lists: the wording of the gateway and of old actions.
_THROTTLED = re.compile(r"too many requests|rate limit|throttl|频繁|限流", re.IGNORECASE)
_NOT_FOUND = re.compile(r"not ?found|not exist|does not exist|不存在", re.IGNORECASE)


class UCloudProviderError(RuntimeError):
    """Base class for errors raised by the UCloud dynamic providers."""


class ResourceFailedError(UCloudProviderError):
    """UCloud reported a failed state (CREATEFAILED, ERROR, Install Fail...)."""

    def __init__(self, kind: str, resource_id: str, state: str, detail: str = "") -> None:
        self.kind, self.resource_id, self.state, self.detail = kind, resource_id, state, detail
        suffix = f": {detail}" if detail else ""
        super().__init__(f"{kind} {resource_id} reached failed state {state}{suffix}")


class WaitTimeoutError(UCloudProviderError):
    """A resource did not reach the wanted state in time."""

    def __init__(self, kind: str, resource_id: str, wanted: str, last_state: str, seconds: float):
        self.kind, self.resource_id, self.last_state = kind, resource_id, last_state
        super().__init__(
            f"timed out after {seconds:g}s waiting for {kind} {resource_id} to become "
            f"{wanted}; last state: {last_state}"
        )


def ret_code_of(error: BaseException) -> int | None:
    code = getattr(error, "code", None)
    return code if isinstance(code, int) else None


def action_of(error: BaseException) -> str | None:
    action = getattr(error, "action", None)
    return action if isinstance(action, str) else None


def is_throttled(error: BaseException) -> bool:
    status = getattr(error, "status_code", None)
    if status == 429 or ret_code_of(error) in THROTTLED_RET_CODES:
        return True
    return bool(_THROTTLED.search(str(getattr(error, "message", "") or "")))


def is_transient(error: BaseException) -> bool:
    """Errors worth another try: throttling, 5xx, dropped connections, service-side codes."""
    if isinstance(error, requests.ConnectionError | requests.Timeout):
        return True
    if is_throttled(error):
        return True
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        return status in RETRYABLE_HTTP_STATUSES
    code = ret_code_of(error)
    if code is None:
        return False
    return code in TRANSIENT_RET_CODES or code > SDK_RETRYABLE_MIN_RET_CODE


def is_not_found(error: BaseException) -> bool:
    """The action's documented not-found RetCode; the message's words only as a fallback."""
    code = ret_code_of(error)
    if code is None:
        return False
    if code in NOT_FOUND_RET_CODES.get(action_of(error) or "", frozenset()):
        return True
    return bool(_NOT_FOUND.search(str(getattr(error, "message", "") or "")))

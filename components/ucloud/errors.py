"""Errors the UCloud providers raise, and how SDK errors are classified.

Pulumi shows an exception's text to the user, so each error carries the
resource id, its last state and UCloud's own message.

Classification is by RetCode, per action where the sources give one; the message's
words are only a fallback, and never for the gateway's common codes (public.md lists
"172 用户不存在" and "292 项目不存在": a wrong key or project is not a deleted resource).
Every code below carries its source; components/ucloud/README.md has the full table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import requests

# ucloud-sdk-python3 ucloud/core/exc/_exc.py: MAX_COMMON_RET_CODE = 2000, and a
# RetCodeException is retryable when code > 2000 (ucloud-sdk-go ucloud/error/server_error.go
# says >= 2000). Codes up to 2000 are the gateway's common codes (API summary/public.md).
SDK_RETRYABLE_MIN_RET_CODE = 2000
# The SDK retries HTTP 429/502/503/504 (ucloud/core/exc/_exc.py HTTPStatusException); 500 is
# our addition (an internal server error says nothing about the request being wrong).
RETRYABLE_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504})

# The gateway's common codes, UCloudDoc-Team/api summary/public.md "错误码说明" (read 2026-12-01).
COMMON_RET_CODES: dict[int, str] = {
    110: "API 响应超时(60秒)",
    130: "API 网关或者认证鉴权服务异常",
    150: "服务目前不可用, 我们正在努力恢复中, 请稍后重试",
    153: "API 请求被限流",
    160: "缺少关键参数 Action",
    161: "Action 不存在",
    170: "缺少签名",
    171: "签名错误",
    172: "用户不存在",
    174: "Token 不存在",
    292: "项目不存在",
    293: "可用区权限错误",
    294: "访问 IP 被拒绝",
    295: "安全锁验证失败",
    299: "IAM 权限校验未通过",
}
THROTTLED_RET_CODES = frozenset({153})
# 110 timeout, 150 "请稍后重试", 153 throttled (public.md). 130 (a fault of the gateway or of
# the auth service, not of the request) is retried by our own judgement: the doc does not
# say "retry". Every other common code is permanent (missing action, bad signature, unknown
# user or project, no permission): not retried.
TRANSIENT_RET_CODES = frozenset({110, 130, 150, 153})

# UNet actions: one product error table covers them (UCloudDoc-Team/api unet-api/error_code.md;
# ulb-api/error_code.md gives the same codes the same meaning).
UNET_ACTIONS = (
    "AllocateEIP",
    "DescribeEIP",
    "UpdateEIPAttribute",
    "ModifyEIPBandwidth",
    "ReleaseEIP",
    "DescribeFirewall",
)


def _each(actions: Iterable[str], codes: Iterable[int]) -> dict[str, frozenset[int]]:
    return {action: frozenset(codes) for action in actions}


# "Not found" has no shared RetCode: each action has its own. Keyed by the SDK's
# RetCodeException.action. DescribeVPC, DescribeSubnet, DescribeEIP, DescribeUFSVolume2 and
# ListUK8SClusterV2 answer an empty list for an unknown id: the Terraform provider turns only
# an empty list into "not found" for them (service_ucloud_vpc.go:23, :44; service_ucloud_unet.go:26;
# service_ucloud_ufs.go:20; service_ucloud_uk8s.go:20) and remarks that the firewall API has a
# not-found code where others do not (service_ucloud_unet.go:86).
NOT_FOUND_RET_CODES: dict[str, frozenset[int]] = {
    # terraform-provider-ucloud ucloud/service_ucloud_vpc.go:89
    "DescribeNATGW": frozenset({54002}),
    # terraform-provider-ucloud ucloud/service_ucloud_uk8s.go:36
    "ListUK8SClusterNodeV2": frozenset({94007}),
    # terraform-provider-ucloud ucloud/service_ucloud_ufs.go:33
    "DescribeUFSVolumeMountpoint": frozenset({65126}),
    # unet-api/error_code.md: 4210 "获取信息失败, 资源不存在", 8039 "资源不存在, 请提交工单或联系
    # 技术支持". The table does not say which action answers which; DescribeFirewall by FWId
    # answers 54002 (terraform-provider-ucloud ucloud/service_ucloud_unet.go:89).
    **_each(UNET_ACTIONS, {4210, 8039}),
    "DescribeFirewall": frozenset({4210, 8039, 54002}),
}

# "Its dependents are deleted but UCloud is still releasing them": the delete is tried again
# until Timings.release runs out. DeleteSubnet 4411: terraform-provider-ucloud
# ucloud/resource_ucloud_subnet.go:193-210 retries it for 10 minutes; CHANGELOG.md:417 (1.12.2)
# "the subnet can not be deleted while associated resources of it have been deleted".
STILL_RELEASING_RET_CODES: dict[str, frozenset[int]] = {
    "DeleteSubnet": frozenset({4411}),
}

# Codes above 2000 that the product tables document as conditions a retry cannot change
# (unet-api/error_code.md): 4002/4011 bandwidth must (not) be 0, 4018/4057 balance too low,
# 4207 quota, 4212 EIP in use, 4215 trial EIP, 4216 shared-bandwidth EIP, 4217 bandwidth at
# its limit, 4219 EIP frozen, 4222 lease expired, 4227 bandwidth below the minimum,
# 4228 Traffic bandwidth too high. Not retried, against the SDK's "> 2000" rule.
PERMANENT_RET_CODES: dict[str, frozenset[int]] = _each(
    UNET_ACTIONS,
    {4002, 4011, 4018, 4057, 4207, 4212, 4215, 4216, 4217, 4219, 4222, 4227, 4228},
)

# Fallbacks only, for actions no source gives a code for, and codes above the common range.
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


class StillReleasingError(UCloudProviderError):
    """UCloud kept refusing a delete because it was still releasing the resource's dependents."""

    def __init__(self, kind: str, resource_id: str, seconds: float, cause: BaseException):
        self.kind, self.resource_id = kind, resource_id
        super().__init__(
            f"{kind} {resource_id} could not be deleted for {seconds:g}s: UCloud was still "
            f"releasing resources that used it (last answer: {cause}). Run the destroy again "
            "once they are gone."
        )


class InvalidUpdateError(UCloudProviderError):
    """An in-place change UCloud would refuse, caught before calling it."""


class MissingProjectError(UCloudProviderError):
    """An action needs a ProjectId, none is configured and no default project was found."""


def ret_code_of(error: BaseException) -> int | None:
    code = getattr(error, "code", None)
    return code if isinstance(code, int) else None


def action_of(error: BaseException) -> str | None:
    action = getattr(error, "action", None)
    return action if isinstance(action, str) else None


def _message_of(error: BaseException) -> str:
    return str(getattr(error, "message", "") or "")


def _listed(table: dict[str, frozenset[int]], error: BaseException) -> bool:
    code = ret_code_of(error)
    return code is not None and code in table.get(action_of(error) or "", frozenset())


def is_throttled(error: BaseException) -> bool:
    """HTTP 429 or RetCode 153; the wording only for codes outside the common table."""
    if getattr(error, "status_code", None) == 429:
        return True
    code = ret_code_of(error)
    if code is None:
        return False
    if code in THROTTLED_RET_CODES:
        return True
    return code not in COMMON_RET_CODES and bool(_THROTTLED.search(_message_of(error)))


def is_not_found(error: BaseException) -> bool:
    """The action's documented not-found RetCode. Only for actions with none documented, and
    codes above the common range, the message's words are the fallback."""
    code = ret_code_of(error)
    if code is None:
        return False
    if _listed(NOT_FOUND_RET_CODES, error):
        return True
    if (action_of(error) or "") in NOT_FOUND_RET_CODES or code <= SDK_RETRYABLE_MIN_RET_CODE:
        return False
    return bool(_NOT_FOUND.search(_message_of(error)))


def is_still_releasing(error: BaseException) -> bool:
    """UCloud refuses a delete while it releases the resource's dependents (DeleteSubnet 4411)."""
    return _listed(STILL_RELEASING_RET_CODES, error)


def is_transient(error: BaseException) -> bool:
    """Errors worth another try soon: dropped connections, throttling, 5xx, 110/130/150/153,
    and codes above 2000 (the SDK's rule) unless they mean gone, still releasing (its own,
    longer loop) or a documented permanent condition."""
    if isinstance(error, requests.ConnectionError | requests.Timeout):
        return True
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        return status in RETRYABLE_HTTP_STATUSES
    code = ret_code_of(error)
    if code is None:
        return False
    if code in TRANSIENT_RET_CODES or is_throttled(error):
        return True
    if is_not_found(error) or is_still_releasing(error) or _listed(PERMANENT_RET_CODES, error):
        return False
    return code > SDK_RETRYABLE_MIN_RET_CODE

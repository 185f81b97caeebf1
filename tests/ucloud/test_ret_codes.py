"""How SDK errors are classified: by each action's RetCode, the wording only as a fallback.

The errors are the SDK's own exception types, built as the SDK builds them from an answer.
"""

from __future__ import annotations

import pytest
import requests
from ucloud.core.exc import HTTPStatusException, RetCodeException

from components.ucloud.errors import (
    is_not_found,
    is_still_releasing,
    is_throttled,
    is_transient,
)


def answer(action: str, code: int, message: str = "错误") -> RetCodeException:
    return RetCodeException(action=action, code=code, message=message)


@pytest.mark.parametrize(
    ("action", "code"),
    [
        ("DescribeNATGW", 54002),  # TF service_ucloud_vpc.go:89
        ("ListUK8SClusterNodeV2", 94007),  # TF service_ucloud_uk8s.go:36
        ("DescribeUFSVolumeMountpoint", 65126),  # TF service_ucloud_ufs.go:33
        ("DescribeFirewall", 54002),  # TF service_ucloud_unet.go:89
        ("ReleaseEIP", 4210),  # unet-api/error_code.md
        ("DescribeEIP", 8039),  # unet-api/error_code.md
    ],
)
def test_documented_codes_mean_gone_whatever_the_message(action: str, code: int) -> None:
    assert is_not_found(answer(action, code))
    assert not is_transient(answer(action, code))  # never retried: gone is an answer


def test_a_code_means_gone_only_for_its_own_action() -> None:
    assert not is_not_found(answer("DescribeUFSVolumeMountpoint", 54002))
    assert not is_not_found(answer("DescribeNATGW", 65126))


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (172, "User Not Exists"),  # a wrong public key
        (292, "项目不存在"),  # a wrong project (summary/public.md)
        (161, "Action 不存在"),  # a misspelt action
        (174, "Token 不存在"),
    ],
)
def test_common_codes_are_never_gone_even_when_their_words_say_so(code: int, message: str) -> None:
    """Else a wrong key or project would make every resource look deleted."""
    assert not is_not_found(answer("DescribeSubnet", code, message))
    assert not is_transient(answer("DescribeSubnet", code, message))


def test_wording_is_not_consulted_for_actions_with_documented_codes() -> None:
    assert not is_not_found(answer("DescribeNATGW", 8040, "VPC 不存在"))


def test_wording_is_the_fallback_for_actions_without_documented_codes() -> None:
    assert is_not_found(answer("RemoveUFSVolume", 8040, "文件系统不存在"))
    assert not is_not_found(answer("RemoveUFSVolume", 8040, "错误"))


@pytest.mark.parametrize("code", [110, 130, 150, 153])
def test_documented_transient_common_codes_are_retried(code: int) -> None:
    assert is_transient(answer("CreateVPC", code))


def test_throttling_is_recognised_by_code_alone() -> None:
    assert is_throttled(answer("CreateVPC", 153))
    assert not is_throttled(answer("CreateVPC", 150))


@pytest.mark.parametrize("code", [160, 161, 170, 171, 172, 230, 292, 293, 299])
def test_permanent_low_codes_are_not_retried(code: int) -> None:
    assert not is_transient(answer("CreateVPC", code))


@pytest.mark.parametrize("code", [4018, 4207, 4212, 4217, 4227, 4228])
def test_documented_permanent_unet_codes_are_not_retried(code: int) -> None:
    assert not is_transient(answer("AllocateEIP", code))


def test_other_codes_above_2000_follow_the_sdks_rule() -> None:
    assert is_transient(answer("CreateVPC", 5000))
    assert is_transient(answer("AllocateEIP", 4200))  # "申请资源失败, 请稍后重试"


def test_subnet_still_releasing_is_its_own_case_not_a_quick_retry() -> None:
    releasing = answer("DeleteSubnet", 4411)
    assert is_still_releasing(releasing)
    assert not is_transient(releasing)
    assert not is_still_releasing(answer("DeleteVPC", 4411))


def test_http_and_connection_failures() -> None:
    assert is_transient(HTTPStatusException(503))
    assert is_transient(HTTPStatusException(429)) and is_throttled(HTTPStatusException(429))
    assert not is_transient(HTTPStatusException(400))
    assert is_transient(requests.ConnectionError("reset"))
    assert not is_transient(ValueError("bad"))

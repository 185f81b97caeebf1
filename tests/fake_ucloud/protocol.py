"""UCloud's wire format as ucloud-sdk-python3 sends it: a form POST of flat keys
("Network.0", "Master.1.Zone") signed with SHA-1 over the sorted pairs."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qsl

# RetCodes. Every message the fake sends is NEUTRAL (NEUTRAL_MESSAGE, or ids and parameter
# names only): no "not found", "不存在", "too many requests", "限流"... so the providers pass
# only by recognising codes, never by reading UCloud's wording.
NEUTRAL_MESSAGE = "错误"
# Documented common codes (UCloudDoc-Team/api summary/public.md "错误码说明").
SERVICE_UNAVAILABLE = 150  # "服务目前不可用...请稍后重试"
THROTTLED = 153  # "API 请求被限流"
UNKNOWN_ACTION = 161  # "Action 不存在"
SIGNATURE_ERROR = 171  # "签名错误"
UNKNOWN_USER = 172  # "用户不存在"
# public.md gives 160 only for a missing Action; the fake uses it for any missing parameter.
MISSING_PARAM = 160
# Documented per action (the providers' table is kept apart, in components/ucloud/errors.py):
NATGW_NOT_FOUND = 54002  # DescribeNATGW: terraform-provider-ucloud service_ucloud_vpc.go:89
UK8S_CLUSTER_NOT_FOUND = 94007  # ListUK8SClusterNodeV2: TF service_ucloud_uk8s.go:36
UFS_VOLUME_NOT_FOUND = 65126  # DescribeUFSVolumeMountpoint: TF service_ucloud_ufs.go:33
SUBNET_STILL_RELEASING = 4411  # DeleteSubnet: TF resource_ucloud_subnet.go:208
# unet-api/error_code.md 8039 "资源不存在": the UNet table's code for a missing resource. The fake
# answers it for every action that names a missing resource and has no documented code of its
# own (that use outside UNet is the fake's own choice).
NOT_FOUND = 8039
# The fake's own choice, no source gives one: "the resource still has dependents".
IN_USE = 8040


class ApiError(Exception):
    """An error answer: RetCode != 0 with a Message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Missing(ApiError):
    """A request named a resource the fake does not have. The server answers the action's
    documented not-found code where one exists (server.NOT_FOUND_BY_ACTION), else NOT_FOUND."""

    def __init__(self, label: str, id_: str) -> None:
        super().__init__(NOT_FOUND, f"{NEUTRAL_MESSAGE} [{label} {id_}]")


def parse_form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))


def signature(params: dict[str, str], private_key: str) -> str:
    """UCloud's signature: sha1 of key+value pairs sorted by key, then the private key."""
    text = "".join(f"{key}{params[key]}" for key in sorted(params) if key != "Signature")
    return hashlib.sha1((text + private_key).encode("utf-8")).hexdigest()


def unflatten(params: dict[str, str]) -> dict[str, Any]:
    """{"Master.0.Zone": "a", "Network.0": "10.0.0.0/16"} -> {"Master": [{"Zone": "a"}], ...}."""
    tree: dict[str, Any] = {}
    for key, value in params.items():
        parts = key.split(".")
        node: Any = tree
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            container_key: Any = int(part) if part.isdigit() else part
            if isinstance(node, dict):
                if last:
                    node[container_key] = value
                else:
                    node = node.setdefault(container_key, {})
            else:  # pragma: no cover - only dicts are built above
                raise ApiError(MISSING_PARAM, f"{NEUTRAL_MESSAGE} [{key}]")
    return _lists(tree)


def _lists(node: Any) -> Any:
    """Turn dicts keyed 0..n-1 into lists."""
    if not isinstance(node, dict):
        return node
    converted = {key: _lists(value) for key, value in node.items()}
    if converted and all(isinstance(key, int) for key in converted):
        return [converted[index] for index in sorted(converted)]
    return converted


def require(params: dict[str, Any], *names: str) -> None:
    for name in names:
        if params.get(name) in (None, "", []):
            raise ApiError(MISSING_PARAM, f"{NEUTRAL_MESSAGE} [{name}]")

"""Which Kubernetes version to send: "1.30" becomes the newest 1.30.x that UK8S offers.

Why: every UCloud example of K8sVersion is a full x.y.z ("1.28.15" in DescribeUK8SImage's docs,
"1.26.7" in UCloudDoc-Team/uk8s version/maintain.md), and no source says "1.30" is accepted.
GetUK8SVersions lists what can be created, so we send only a version from that list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from components.ucloud.api import UCloudApi
from components.ucloud.errors import UCloudProviderError

# GetUK8SVersions: Kind is required and "Dedicated" is its only documented value; ProjectId is
# required too (ucloud-sdk-python3 0.11.150 services/uk8s/schemas/apis.py:1478-1485
# GetUK8SVersionsRequestSchema; UCloudDoc-Team/api uk8s-api/get_uk8s_versions.md). The answer is
# Data[].K8sVersion (SDK models.py:630-638 UK8SVersionData). ucloud-cli sends Kind=Dedicated too
# (products/uk8s/internal/uk8s/version_list.go:13).
CLUSTER_KIND = "Dedicated"
_WANTED = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")
_OFFERED = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


class K8sVersionError(UCloudProviderError):
    """The wanted version is not one UK8S offers (or cannot be looked up)."""


def _key(version: str) -> tuple[int, int, int] | None:
    match = _OFFERED.match(version.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def choose_version(wanted: str, offered: Iterable[str]) -> str:
    """The offered version that `wanted` ("1.30" or "1.30.3") stands for; the newest patch wins."""
    listed = sorted({v for v in offered if _key(v)}, key=lambda v: _key(v) or (0, 0, 0))
    match = _WANTED.match(str(wanted).strip())
    allowed = ", ".join(listed) or "(GetUK8SVersions listed none)"
    if not match:
        raise K8sVersionError(
            f"k8s_version: got {wanted!r}; allowed: major.minor or major.minor.patch of a version "
            f"UK8S offers: {allowed}"
        )
    major, minor, patch = match[1], match[2], match[3]
    fitting = [
        v
        for v in listed
        if (key := _key(v))
        and key[:2] == (int(major), int(minor))
        and (patch is None or key[2] == int(patch))
    ]
    if not fitting:
        raise K8sVersionError(
            f"k8s_version: got {wanted!r}; UK8S offers (GetUK8SVersions): {allowed}"
        )
    return fitting[-1]


def offered_versions(api: UCloudApi) -> list[str]:
    """What GetUK8SVersions lists for dedicated clusters in the API's region and project.

    Its ProjectId is required (SDK schema, API docs): UCloudApi sends the stack's project or the
    account's default one (GetProjectList)."""
    # One try: it runs inside create's retried block (see UCloudProvider.create).
    response = api.call_once("uk8s", "get_uk8s_versions", {"Kind": CLUSTER_KIND})
    return [str(item.get("K8sVersion") or "") for item in response.get("Data") or []]


def resolve_version(api: UCloudApi, wanted: str) -> str:
    return choose_version(wanted, offered_versions(api))

"""ucloud_ufs_volume as a Pulumi dynamic resource: CreateUFSVolume / DescribeUFSVolume2 /
ExtendUFSVolume / UpdateUFSVolumeInfo / RemoveUFSVolume."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from components.ucloud.api import UCloudApi
from components.ucloud.base import AVAILABLE, Live, Timings, UCloudProvider
from components.ucloud.errors import InvalidUpdateError
from components.ucloud.resource import MODULE, args_defaults, resource_props
from components.ucloud.validation import CHARGE_TYPES, Checker, as_int, is_unknown

STORAGE_TYPES = ("Basic", "Advanced")
MIN_SIZE_GB = {"Basic": 500, "Advanced": 100}
MAX_SIZE_GB = 100_000
SIZE_STEP_GB = 100
PROTOCOL_TYPES = ("NFSv4",)

# ExtendUFSVolume's Size (the new total, GB), per the SDK (ufs/client.py extend_ufs_volume) and
# ufs-api/extend_ufs_volume.md, read 2026-12-01: "最大不超过20T, 香港容量型必须为100的整数倍,
# Size最小为500GB, 北京, 上海, 广州的容量型必须为1024的整数倍, Size最小为1024GB。性能型文件系统
# Size最小为100GB". The cities are mapped to every region summary/regionlist.md names after them
# (北京 cn-bj1, cn-bj2; 上海 cn-sh2, 金融云 cn-sh; 广州 cn-gd, cn-gd2); which of them sell UFS is
# not documented. Elsewhere the doc gives no step: CreateUFSVolume's 100 GB step is used.
# 20T is read as 20,480 GB (20 x 1,024), the larger of the two readings: only sizes over it
# are refused for certain.
GROWTH_STEP_1024_REGIONS = frozenset({"cn-bj1", "cn-bj2", "cn-sh2", "cn-sh", "cn-gd", "cn-gd2"})
GROWTH_STEP_1024_GB = 1024
GROWTH_MAX_GB = 20 * 1024


def growth_step(region: str, storage_type: str) -> tuple[int, int]:
    """(step, minimum) in GB that ExtendUFSVolume accepts for this region and storage type."""
    if storage_type == "Basic" and region in GROWTH_STEP_1024_REGIONS:
        return GROWTH_STEP_1024_GB, GROWTH_STEP_1024_GB
    return SIZE_STEP_GB, MIN_SIZE_GB.get(storage_type, SIZE_STEP_GB)


def growth_problem(region: str, storage_type: str, old_gb: int, new_gb: int) -> str | None:
    """Why ExtendUFSVolume would refuse growing a volume from old_gb to new_gb, or None."""
    if new_gb == old_gb:
        return None
    if new_gb < old_gb:
        return f"size: got {new_gb}; at least the current size {old_gb} GB (UFS cannot shrink)"
    step, minimum = growth_step(region, storage_type)
    if new_gb % step or new_gb < minimum or new_gb > GROWTH_MAX_GB:
        where = f"{storage_type} volumes in {region}"
        return (
            f"size: got {new_gb}; growing {where} (ExtendUFSVolume) needs a multiple of "
            f"{step} GB from {minimum} to {GROWTH_MAX_GB} GB, e.g. "
            f"{max(minimum, (old_gb // step + 1) * step)}"
        )
    return None


@dataclass
class UfsVolumeArgs:
    """Inputs of a UFS (NFS) file system; names follow ucloud_ufs_volume. Size is in GB."""

    region: pulumi.Input[str]
    name: pulumi.Input[str]
    size: pulumi.Input[int]
    project_id: pulumi.Input[str] | None = None
    storage_type: pulumi.Input[str] = "Basic"
    protocol_type: pulumi.Input[str] = "NFSv4"
    tag: pulumi.Input[str] = "Default"
    remark: pulumi.Input[str] = ""
    charge_type: pulumi.Input[str] = "Dynamic"
    duration: pulumi.Input[int] = 1


class UfsVolumeProvider(UCloudProvider):
    """Size grows (ExtendUFSVolume), name and remark change in place; a shrink is refused."""

    kind = "UFS volume"
    defaults = args_defaults(UfsVolumeArgs)
    updatable = frozenset({"size", "name", "remark"})
    integer_fields = frozenset({"size", "duration"})

    def validate(self, checker: Checker, olds: Mapping[str, Any]) -> None:
        inputs = checker.inputs
        checker.text("name")
        checker.choice("storage_type", STORAGE_TYPES)
        checker.choice("protocol_type", PROTOCOL_TYPES)
        checker.choice("charge_type", CHARGE_TYPES)
        checker.text("tag", required=False)
        checker.text("remark", required=False, max_len=255)
        checker.integer("duration", 0, 60)
        storage = inputs.get("storage_type")
        checker.integer("size", MIN_SIZE_GB.get(storage, 100), MAX_SIZE_GB, SIZE_STEP_GB)
        old_size, new_size = as_int(olds.get("size")), inputs.get("size")
        if (
            isinstance(old_size, int)
            and isinstance(new_size, int)
            and not is_unknown(new_size)
            and new_size < old_size
        ):
            checker.fail(
                "size", new_size, f"at least the current size {old_size} (UFS cannot shrink)"
            )

    def describe(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> Live | None:
        item = api.describe_one(
            "ufs", "describe_ufs_volume_2", {"VolumeId": id_}, "DataSet", "VolumeId", id_
        )
        if item is None:
            return None
        return Live(
            AVAILABLE,
            {
                "name": item.get("VolumeName"),
                "size": int(item.get("Size") or 0),
                "remark": item.get("Remark") or "",
                "create_time": int(item.get("CreateTime") or 0),
                "expire_time": int(item.get("ExpiredTime") or 0),
            },
        )

    def find(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str | None:
        volumes = api.paged(
            lambda page: api.call_once("ufs", "describe_ufs_volume_2", page), "DataSet"
        )
        for item in volumes:
            if (
                item.get("VolumeName") == inputs["name"]
                and item.get("StorageType") == inputs["storage_type"]
                and item.get("ProtocolType") == inputs["protocol_type"]
                and (item.get("Tag") or "Default") == inputs["tag"]
            ):
                return str(item["VolumeId"])
        return None

    def create_once(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str:
        response = api.call_once(
            "ufs",
            "create_ufs_volume",
            {
                "Size": inputs["size"],
                "StorageType": inputs["storage_type"],
                "ProtocolType": inputs["protocol_type"],
                "ChargeType": inputs["charge_type"],
                "Quantity": inputs["duration"],
                "VolumeName": inputs["name"],
                "Tag": inputs["tag"],
                "Remark": inputs["remark"],
            },
        )
        return str(response["VolumeId"])

    def apply_update(
        self, api: UCloudApi, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any]
    ) -> None:
        old_size = as_int(olds.get("size"))
        if old_size != news["size"]:
            # Refused before any call, so a bad change leaves the volume untouched.
            problem = growth_problem(
                str(news["region"]), str(news["storage_type"]), int(old_size), int(news["size"])
            )
            if problem:
                raise InvalidUpdateError(f"UFS volume {id_}: {problem}")
            api.call("ufs", "extend_ufs_volume", {"VolumeId": id_, "Size": news["size"]})
        if olds.get("name") != news["name"] or olds.get("remark") != news["remark"]:
            api.call(
                "ufs",
                "update_ufs_volume_info",
                {"VolumeId": id_, "VolumeName": news["name"], "Remark": news["remark"]},
            )

    def remove(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        api.call_once("ufs", "remove_ufs_volume", {"VolumeId": id_})


class UfsVolume(Resource, module=MODULE, name="UfsVolume"):
    """A UFS file system. Its id is the volume id."""

    region: pulumi.Output[str]
    project_id: pulumi.Output[str | None]
    name: pulumi.Output[str]
    size: pulumi.Output[int]
    storage_type: pulumi.Output[str]
    protocol_type: pulumi.Output[str]
    tag: pulumi.Output[str]
    remark: pulumi.Output[str]
    charge_type: pulumi.Output[str]
    duration: pulumi.Output[int]
    create_time: pulumi.Output[int]
    expire_time: pulumi.Output[int]

    def __init__(
        self,
        resource_name: str,
        args: UfsVolumeArgs,
        opts: pulumi.ResourceOptions | None = None,
        timings: Timings | None = None,
    ) -> None:
        props = resource_props(args, computed=["create_time", "expire_time"])
        super().__init__(UfsVolumeProvider(timings), resource_name, props, opts)

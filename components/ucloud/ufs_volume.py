"""ucloud_ufs_volume as a Pulumi dynamic resource: CreateUFSVolume / DescribeUFSVolume2 /
ExtendUFSVolume / UpdateUFSVolumeInfo / RemoveUFSVolume."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, Resource

from components.ucloud import vocabulary
from components.ucloud.api import UCloudApi
from components.ucloud.base import AVAILABLE, Live, Timings, UCloudProvider
from components.ucloud.errors import InvalidUpdateError
from components.ucloud.resource import MODULE, args_defaults, resource_props
from components.ucloud.validation import CHARGE_TYPES, Checker, as_int

# Storage classes, sizes and protocols: vocabulary.UFS_* (API create_ufs_volume.md, SDK).
STORAGE_TYPES = vocabulary.UFS_STORAGE_TYPES
PROTOCOL_TYPES = vocabulary.UFS_PROTOCOL_TYPES


def growth_problem(region: str, storage_type: str, old_gb: int, new_gb: int) -> str | None:
    """Why ExtendUFSVolume would refuse growing a volume from old_gb to new_gb, or None."""
    if new_gb == old_gb:
        return None
    if new_gb < old_gb:
        return f"size: got {new_gb}; at least the current size {old_gb} GB (UFS cannot shrink)"
    allowed = vocabulary.ufs_grow_range(region, storage_type)
    if not allowed.allows(new_gb):
        nearest = max(allowed.low, (old_gb // allowed.step + 1) * allowed.step)
        return (
            f"size: got {new_gb}; growing {storage_type} volumes in {region} (ExtendUFSVolume) "
            f"needs a multiple of {allowed.step} GB from {allowed.low} to {allowed.high} GB, "
            f"e.g. {nearest}"
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
        checker.region()
        checker.text("name")
        checker.choice("storage_type", STORAGE_TYPES)
        checker.choice("protocol_type", PROTOCOL_TYPES)
        checker.choice("charge_type", CHARGE_TYPES)
        checker.text("tag", required=False)
        checker.text("remark", required=False, max_len=255)
        checker.integer("duration", 0, 60)
        storage = inputs.get("storage_type")
        old = self.normalize(olds) if olds else {}
        old_size, new_size = old.get("size"), inputs.get("size")
        growing = (
            isinstance(old_size, int)
            and old.get("region") == inputs.get("region")
            and old.get("storage_type") == storage
        )
        if not growing:  # a new volume (or a replacement): CreateUFSVolume's sizes
            checker.in_range("size", vocabulary.ufs_size_range(str(storage)))
        elif isinstance(new_size, int) and not isinstance(new_size, bool):
            problem = growth_problem(str(inputs["region"]), str(storage), old_size, new_size)
            if problem:
                checker.failures.append(CheckFailure("size", problem))

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

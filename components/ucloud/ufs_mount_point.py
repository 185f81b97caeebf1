"""A UFS mount point in one VPC subnet: AddUFSVolumeMountPoint /
DescribeUFSVolumeMountpoint / RemoveUFSVolumeMountPoint."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from components.ucloud.api import UCloudApi
from components.ucloud.base import AVAILABLE, Live, Timings, UCloudProvider
from components.ucloud.errors import is_not_found
from components.ucloud.resource import MODULE, args_defaults, resource_props
from components.ucloud.validation import Checker

PENDING = "Pending"
ID_SEPARATOR = "/"


def mount_point_id(volume_id: str, vpc_id: str, subnet_id: str) -> str:
    """UCloud gives a mount point no id; volume + VPC + subnet identify it."""
    return ID_SEPARATOR.join((volume_id, vpc_id, subnet_id))


def plain_ip(mount_point_ip: str) -> str:
    """UCloud answers "10.9.0.12:/"; Kubernetes' NFS volume wants "10.9.0.12"."""
    host = mount_point_ip.strip()
    if host.endswith(":/"):
        host = host[:-2]
    return str(ipaddress.ip_address(host)) if host else ""


@dataclass
class UfsMountPointArgs:
    """Inputs of a mount point: the volume, and the VPC subnet it is reachable from."""

    region: pulumi.Input[str]
    volume_id: pulumi.Input[str]
    name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    project_id: pulumi.Input[str] | None = None


class UfsMountPointProvider(UCloudProvider):
    """There is no update action for mount points: every change replaces."""

    kind = "UFS mount point"
    defaults = args_defaults(UfsMountPointArgs)

    def validate(self, checker: Checker, olds: Mapping[str, Any]) -> None:
        checker.region()
        for field in ("volume_id", "name", "vpc_id", "subnet_id"):
            checker.text(field)

    def _lookup(self, api: UCloudApi, volume_id: str, vpc_id: str, subnet_id: str) -> Live | None:
        try:
            response = api.call_once(
                "ufs", "describe_ufs_volume_mountpoint", {"VolumeId": volume_id}
            )
        except Exception as error:
            if is_not_found(error):
                return None
            raise
        for item in response.get("DataSet") or []:
            if item.get("VpcId") == vpc_id and item.get("SubnetId") == subnet_id:
                ip = plain_ip(str(item.get("MountPointIp") or ""))
                return Live(
                    AVAILABLE if ip else PENDING,
                    {"mount_point_ip": ip, "name": item.get("MountPointName")},
                )
        return None

    def describe(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> Live | None:
        volume_id, vpc_id, subnet_id = id_.split(ID_SEPARATOR)
        return self._lookup(api, volume_id, vpc_id, subnet_id)

    def find(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str | None:
        keys = (inputs["volume_id"], inputs["vpc_id"], inputs["subnet_id"])
        return mount_point_id(*keys) if self._lookup(api, *keys) else None

    def create_once(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str:
        api.call_once(
            "ufs",
            "add_ufs_volume_mount_point",
            {
                "VolumeId": inputs["volume_id"],
                "MountPointName": inputs["name"],
                "VpcId": inputs["vpc_id"],
                "SubnetId": inputs["subnet_id"],
            },
        )
        return mount_point_id(inputs["volume_id"], inputs["vpc_id"], inputs["subnet_id"])

    def remove(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        volume_id, vpc_id, subnet_id = id_.split(ID_SEPARATOR)
        api.call_once(
            "ufs",
            "remove_ufs_volume_mount_point",
            {"VolumeId": volume_id, "VpcId": vpc_id, "SubnetId": subnet_id},
        )


class UfsMountPoint(Resource, module=MODULE, name="UfsMountPoint"):
    """A UFS mount point; `mount_point_ip` is the NFS server address, without ":/"."""

    region: pulumi.Output[str]
    project_id: pulumi.Output[str | None]
    volume_id: pulumi.Output[str]
    name: pulumi.Output[str]
    vpc_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    mount_point_ip: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        args: UfsMountPointArgs,
        opts: pulumi.ResourceOptions | None = None,
        timings: Timings | None = None,
    ) -> None:
        props = resource_props(args, computed=["mount_point_ip"])
        super().__init__(UfsMountPointProvider(timings), resource_name, props, opts)

"""Fake VPC, subnet and UFS actions.

Unknown ids in DescribeVPC, DescribeSubnet and DescribeUFSVolume2 give an empty list, as the
Terraform provider expects (service_ucloud_vpc.go:23, :44; service_ucloud_ufs.go:20); a
missing volume in DescribeUFSVolumeMountpoint is RetCode 65126 (server.NOT_FOUND_BY_ACTION).
"""

from __future__ import annotations

from typing import Any

from tests.fake_ucloud.cloud import FakeCloud, Handler, page
from tests.fake_ucloud.protocol import (
    IN_USE,
    NEUTRAL_MESSAGE,
    SUBNET_STILL_RELEASING,
    ApiError,
    Missing,
    require,
)

# Bad parameters: RetCode 230, as UDB answers for an unknown DBId (terraform-provider-ucloud
# service_ucloud_db.go:18); using it for every bad parameter is the fake's own choice. Below
# 2000, so the providers never retry it.
BAD_PARAM = 230
# ExtendUFSVolume (ufs-api/extend_ufs_volume.md): Basic volumes in Beijing, Shanghai and
# Guangzhou grow in multiples of 1024 GB from 1024; Hong Kong and (the doc is silent) the other
# regions in multiples of 100 from 500; Advanced from 100; at most 20T (read as 20 x 1024).
STEP_1024_REGIONS = ("cn-bj1", "cn-bj2", "cn-sh2", "cn-sh", "cn-gd", "cn-gd2")
EXTEND_MAX_GB = 20 * 1024


def create_vpc(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "Name", "Network")
    networks = p["Network"] if isinstance(p["Network"], list) else [p["Network"]]
    fields = {
        "Name": p["Name"],
        "Network": networks,
        "Tag": p.get("Tag") or "Default",
        "Remark": p.get("Remark", ""),
        "Region": p["Region"],
    }
    record = cloud.add("vpc", "uvnet", fields, "Available", "Available")
    return {"VPCId": record.id}


def describe_vpc(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region")
    ids = p.get("VPCIds") or []
    items = [
        {"VPCId": r.id, **r.fields}
        for r in cloud.poll("vpc")
        if r.fields["Region"] == p["Region"]
        and (not ids or r.id in ids)
        and (not p.get("Tag") or r.fields["Tag"] == p["Tag"])
    ]
    return {"DataSet": page(items, p), "TotalCount": len(items)}


def delete_vpc(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "VPCId")
    record = cloud.get("vpc", p["VPCId"], "VPC")
    if any(s.fields["VPCId"] == record.id for s in cloud.kind("subnet").values()):
        raise ApiError(IN_USE, f"VPC [{record.id}] still has subnets")
    if any(g.fields["VPCId"] == record.id for g in cloud.kind("natgw").values()):
        raise ApiError(IN_USE, f"VPC [{record.id}] still has NAT gateways")
    cloud.kind("vpc").pop(record.id)
    return {}


def create_subnet(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "VPCId", "Subnet")
    cloud.get("vpc", p["VPCId"], "VPC")
    netmask = str(p.get("Netmask") or 24)
    for other in cloud.kind("subnet").values():
        same = (other.fields["Subnet"], other.fields["Netmask"]) == (p["Subnet"], netmask)
        if other.fields["VPCId"] == p["VPCId"] and same:
            raise ApiError(IN_USE, f"subnet {p['Subnet']}/{netmask} already exists in the VPC")
    fields = {
        "VPCId": p["VPCId"],
        "Subnet": p["Subnet"],
        "Netmask": netmask,
        "SubnetName": p.get("SubnetName") or "Subnet",
        "Tag": p.get("Tag") or "Default",
        "Remark": p.get("Remark", ""),
        "Region": p["Region"],
    }
    return {"SubnetId": cloud.add("subnet", "subnet", fields, "Available", "Available").id}


def describe_subnet(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region")
    items = [
        {"SubnetId": r.id, **{k: v for k, v in r.fields.items() if not k.startswith("_")}}
        for r in cloud.poll("subnet")
        if (not p.get("SubnetId") or r.id == p["SubnetId"])
        and (not p.get("VPCId") or r.fields["VPCId"] == p["VPCId"])
    ]
    return {"DataSet": page(items, p), "TotalCount": len(items)}


def update_subnet_attribute(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "SubnetId")
    record = cloud.get("subnet", p["SubnetId"], "Subnet")
    if p.get("Name"):
        record.fields["SubnetName"] = p["Name"]
    if p.get("Tag"):
        record.fields["Tag"] = p["Tag"]
    return {}


def delete_subnet(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "SubnetId")
    record = cloud.get("subnet", p["SubnetId"], "Subnet")
    users = [c for c in cloud.kind("cluster").values() if c.fields["SubnetId"] == record.id]
    if users:
        raise ApiError(IN_USE, f"subnet [{record.id}] is used by cluster {users[0].id}")
    gateways = [g for g in cloud.kind("natgw").values() if record.id in g.fields["SubnetIds"]]
    if gateways:
        raise ApiError(IN_USE, f"subnet [{record.id}] is bound to NAT gateway {gateways[0].id}")
    if record.fields.get("_releasing", 0) > 0:
        record.fields["_releasing"] -= 1
        raise ApiError(SUBNET_STILL_RELEASING, f"{NEUTRAL_MESSAGE} [{record.id}]")
    cloud.kind("subnet").pop(record.id)
    return {}


def create_ufs_volume(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "Size", "StorageType", "ProtocolType")
    size = int(p["Size"])
    minimum = 500 if p["StorageType"] == "Basic" else 100
    if size % 100 or size < minimum:  # create_ufs_volume.md: multiples of 100, Basic >= 500
        raise ApiError(BAD_PARAM, f"{NEUTRAL_MESSAGE} [Size {size}]")
    fields = {
        "VolumeName": p.get("VolumeName") or "",
        "Size": size,
        "StorageType": p["StorageType"],
        "ProtocolType": p["ProtocolType"],
        "Tag": p.get("Tag") or "Default",
        "Remark": p.get("Remark", ""),
        "ExpiredTime": 0,
        "MountPoints": [],
        "Region": p["Region"],
    }
    record = cloud.add("ufs", "ufs", fields, "Available", "Available")
    return {"VolumeId": record.id, "VolumeName": fields["VolumeName"], "VolumeStatus": "Available"}


def describe_ufs_volume2(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region")
    items = [
        {
            "VolumeId": r.id,
            **{k: v for k, v in r.fields.items() if k not in ("MountPoints", "Region")},
            "TotalMountPointNum": len(r.fields["MountPoints"]),
        }
        for r in cloud.poll("ufs")
        if r.fields["Region"] == p["Region"] and (not p.get("VolumeId") or r.id == p["VolumeId"])
    ]
    return {"DataSet": page(items, p), "TotalCount": len(items)}


def extend_ufs_volume(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "VolumeId", "Size")
    record = cloud.get("ufs", p["VolumeId"], "Volume")
    size = int(p["Size"])
    basic = record.fields["StorageType"] == "Basic"
    step, minimum = (1024, 1024) if basic and p["Region"] in STEP_1024_REGIONS else (100, 100)
    if basic and step == 100:
        minimum = 500
    if size < record.fields["Size"] or size % step or size < minimum or size > EXTEND_MAX_GB:
        raise ApiError(BAD_PARAM, f"{NEUTRAL_MESSAGE} [Size {size}]")
    record.fields["Size"] = size
    return {}


def update_ufs_volume_info(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "VolumeId")
    record = cloud.get("ufs", p["VolumeId"], "Volume")
    if p.get("VolumeName"):
        record.fields["VolumeName"] = p["VolumeName"]
    if "Remark" in p:
        record.fields["Remark"] = p["Remark"]
    return {}


def remove_ufs_volume(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "VolumeId")
    record = cloud.get("ufs", p["VolumeId"], "Volume")
    if record.fields["MountPoints"]:
        raise ApiError(IN_USE, f"Volume [{record.id}] still has mount points")
    cloud.kind("ufs").pop(record.id)
    return {}


def add_mount_point(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "VolumeId", "MountPointName", "VpcId", "SubnetId")
    record = cloud.get("ufs", p["VolumeId"], "Volume")
    cloud.get("subnet", p["SubnetId"], "Subnet")
    points = record.fields["MountPoints"]
    if any(m["SubnetId"] == p["SubnetId"] for m in points):
        raise ApiError(IN_USE, "a mount point already exists in this subnet")
    points.append(
        {
            "MountPointName": p["MountPointName"],
            "VpcId": p["VpcId"],
            "SubnetId": p["SubnetId"],
            "MountPointIp": "",
            "_ip": f"10.9.{len(points)}.{10 + len(cloud.kind('ufs'))}:/",
            "_polls": 1,
        }
    )
    return {}


def describe_mount_points(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "VolumeId")
    record = cloud.get("ufs", p["VolumeId"], "Volume")
    points = record.fields["MountPoints"]
    for point in points:  # the IP shows up one poll after creation
        if point["_polls"] > 0:
            point["_polls"] -= 1
        else:
            point["MountPointIp"] = point["_ip"]
    data = [{k: v for k, v in m.items() if not k.startswith("_")} for m in points]
    return {"DataSet": data, "TotalMountPointNum": len(data), "MaxMountPointNum": 5}


def remove_mount_point(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "VolumeId", "VpcId", "SubnetId")
    record = cloud.get("ufs", p["VolumeId"], "Volume")
    points = record.fields["MountPoints"]
    keep = [m for m in points if (m["VpcId"], m["SubnetId"]) != (p["VpcId"], p["SubnetId"])]
    if len(keep) == len(points):
        raise Missing("mount point", p["SubnetId"])
    record.fields["MountPoints"] = keep
    cloud.releasing([p["SubnetId"]])
    return {}


HANDLERS: dict[str, Handler] = {
    "CreateVPC": create_vpc,
    "DescribeVPC": describe_vpc,
    "DeleteVPC": delete_vpc,
    "CreateSubnet": create_subnet,
    "DescribeSubnet": describe_subnet,
    "UpdateSubnetAttribute": update_subnet_attribute,
    "DeleteSubnet": delete_subnet,
    "CreateUFSVolume": create_ufs_volume,
    "DescribeUFSVolume2": describe_ufs_volume2,
    "ExtendUFSVolume": extend_ufs_volume,
    "UpdateUFSVolumeInfo": update_ufs_volume_info,
    "RemoveUFSVolume": remove_ufs_volume,
    "AddUFSVolumeMountPoint": add_mount_point,
    "DescribeUFSVolumeMountpoint": describe_mount_points,
    "RemoveUFSVolumeMountPoint": remove_mount_point,
}

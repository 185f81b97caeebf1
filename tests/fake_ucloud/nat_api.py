"""Fake EIP, firewall and NAT gateway actions, in the shapes ucloud-sdk-python3's schemas expect."""

from __future__ import annotations

from typing import Any

from tests.fake_ucloud.cloud import FakeCloud, Handler, Lifecycle, Record, page
from tests.fake_ucloud.network_api import BAD_PARAM
from tests.fake_ucloud.protocol import (
    IN_USE,
    NATGW_NOT_FOUND,
    NEUTRAL_MESSAGE,
    ApiError,
    Missing,
    require,
)

OPERATORS = {"Bgp": "BGP", "International": "International", "BGPPro": "BGPPro"}
# AllocateEIP: Traffic 1-300, Bandwidth 1-10000; ModifyEIPBandwidth: Traffic 1-200, Bandwidth
# 1-800 (unet-api/allocate_eip.md, modify_eip_bandwidth.md). Out of range: unet-api/error_code.md
# 4227 "带宽低于最低限制" / 4228 "流量计费模式带宽过高"; 4217 "带宽已达到上限" for Bandwidth mode.
PAY_MODE_LIMITS = {"Bandwidth": 10000, "Traffic": 300}
MODIFY_LIMITS = {"Bandwidth": 800, "Traffic": 200}
BANDWIDTH_TOO_LOW, TRAFFIC_TOO_HIGH, BANDWIDTH_AT_LIMIT = 4227, 4228, 4217


def _bandwidth_error(bandwidth: int, pay_mode: str, limits: dict[str, int]) -> ApiError | None:
    if bandwidth < 1:
        return ApiError(BANDWIDTH_TOO_LOW, f"{NEUTRAL_MESSAGE} [Bandwidth {bandwidth}]")
    if bandwidth > limits[pay_mode]:
        code = TRAFFIC_TOO_HIGH if pay_mode == "Traffic" else BANDWIDTH_AT_LIMIT
        return ApiError(code, f"{NEUTRAL_MESSAGE} [Bandwidth {bandwidth}]")
    return None


DEFAULT_FIREWALLS = (("Web", "recommend web"), ("NonWeb", "recommend non web"))


# ---- EIP -------------------------------------------------------------------------------
def _binding(cloud: FakeCloud, eip_id: str) -> Record | None:
    for gateway in cloud.kind("natgw").values():
        if eip_id in gateway.fields["EIPIds"]:
            return gateway
    return None


def allocate_eip(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "Bandwidth", "OperatorName")
    if p["OperatorName"] not in OPERATORS:
        raise ApiError(BAD_PARAM, f"{NEUTRAL_MESSAGE} [OperatorName {p['OperatorName']}]")
    pay_mode = p.get("PayMode") or "Bandwidth"
    bandwidth = int(p["Bandwidth"])
    if pay_mode not in PAY_MODE_LIMITS:
        raise ApiError(BAD_PARAM, f"{NEUTRAL_MESSAGE} [PayMode {pay_mode}]")
    error = _bandwidth_error(bandwidth, pay_mode, PAY_MODE_LIMITS)
    if error:
        raise error
    number = len(cloud.kind("eip")) + 1
    fields = {
        "Name": p.get("Name") or "EIP",
        "Tag": p.get("Tag") or "Default",
        "Remark": p.get("Remark", ""),
        "Bandwidth": bandwidth,
        "BandwidthType": 0,
        "PayMode": pay_mode,
        "ChargeType": p.get("ChargeType") or "Month",
        "EIPAddr": [
            {"IP": f"106.75.{number}.{10 + number}", "OperatorName": OPERATORS[p["OperatorName"]]}
        ],
        "Region": p["Region"],
    }
    record = cloud.add("eip", "eip", fields, "free", "free")
    return {"EIPSet": [{"EIPId": record.id, "EIPAddr": fields["EIPAddr"]}]}


def _eip_view(cloud: FakeCloud, record: Record) -> dict[str, Any]:
    gateway = _binding(cloud, record.id)
    shown = {k: v for k, v in record.fields.items() if k != "Region"}
    view = {**shown, "EIPId": record.id, "Status": "used" if gateway else "free"}
    if gateway:
        view["Resource"] = {
            "ResourceType": "natgw",
            "ResourceID": gateway.id,
            "ResourceName": gateway.fields["NATGWName"],
        }
    return view


def describe_eip(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region")
    ids = p.get("EIPIds") or []
    items = [
        _eip_view(cloud, r)
        for r in cloud.poll("eip")
        if r.fields["Region"] == p["Region"] and (not ids or r.id in ids)
    ]
    free = sum(1 for item in items if item["Status"] == "free")
    return {"EIPSet": page(items, p), "TotalCount": len(items), "UnbindCount": free}


def update_eip_attribute(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "EIPId")
    record = cloud.get("eip", p["EIPId"], "EIP")
    if not any(p.get(key) for key in ("Name", "Tag", "Remark")):
        raise ApiError(BAD_PARAM, f"{NEUTRAL_MESSAGE} [Name, Tag, Remark]")
    for key in ("Name", "Tag", "Remark"):
        if key in p:
            record.fields[key] = p[key]
    return {}


def modify_eip_bandwidth(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "EIPId", "Bandwidth")
    record = cloud.get("eip", p["EIPId"], "EIP")
    bandwidth = int(p["Bandwidth"])
    error = _bandwidth_error(bandwidth, record.fields["PayMode"], MODIFY_LIMITS)
    if error:
        raise error
    record.fields["Bandwidth"] = bandwidth
    return {}


def release_eip(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "EIPId")
    record = cloud.get("eip", p["EIPId"], "EIP")
    gateway = _binding(cloud, record.id)
    if gateway:
        raise ApiError(IN_USE, f"EIP [{record.id}] is bound to {gateway.id}, unbind it first")
    cloud.kind("eip").pop(record.id)
    return {}


# ---- firewalls ----------------------------------------------------------------------------
def default_firewalls(cloud: FakeCloud, region: str) -> list[Record]:
    """Every project has UCloud's built-in firewalls; the fake makes them on first use."""
    records = [r for r in cloud.kind("firewall").values() if r.fields["Region"] == region]
    if not records:
        for name, kind in DEFAULT_FIREWALLS:
            id_ = f"firewall-{region}-{name.lower()}"
            fields = {"Name": name, "Type": kind, "Tag": "Default", "Region": region}
            life = Lifecycle("Available", "Available", 0)
            cloud.kind("firewall")[id_] = Record(id_, {**fields, "CreateTime": 0}, life)
        records = [r for r in cloud.kind("firewall").values() if r.fields["Region"] == region]
    return records


def describe_firewall(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region")
    items = [
        {
            "FWId": r.id,
            "GroupId": r.id[-6:],
            "Name": r.fields["Name"],
            "Type": r.fields["Type"],
            "Tag": r.fields["Tag"],
            "Remark": "",
            "ResourceCount": sum(
                1 for g in cloud.kind("natgw").values() if g.fields["FirewallId"] == r.id
            ),
            "Rule": [],
        }
        for r in default_firewalls(cloud, p["Region"])
        if not p.get("FWId") or r.id == p["FWId"]
    ]
    return {"DataSet": page(items, p), "TotalCount": len(items)}


# ---- NAT gateways -------------------------------------------------------------------------
def _subnets_of_vpc(cloud: FakeCloud, vpc_id: str, subnet_ids: list[str]) -> None:
    for subnet_id in subnet_ids:
        subnet = cloud.get("subnet", subnet_id, "Subnet")
        if subnet.fields["VPCId"] != vpc_id:
            raise ApiError(BAD_PARAM, f"subnet [{subnet_id}] is not in VPC [{vpc_id}]")


def create_natgw(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "NATGWName", "FirewallId", "EIPIds", "VPCId")
    vpc = cloud.get("vpc", p["VPCId"], "VPC")
    if p["FirewallId"] not in {f.id for f in default_firewalls(cloud, p["Region"])}:
        raise Missing("firewall", p["FirewallId"])
    subnet_ids = list(p.get("SubnetworkIds") or [])
    _subnets_of_vpc(cloud, vpc.id, subnet_ids)
    for eip_id in p["EIPIds"]:
        cloud.get("eip", eip_id, "EIP")
        if _binding(cloud, eip_id):
            raise ApiError(IN_USE, f"EIP [{eip_id}] is already bound")
    fields = {
        "NATGWName": p["NATGWName"],
        "VPCId": vpc.id,
        "VPCName": vpc.fields["Name"],
        "SubnetIds": subnet_ids,
        "EIPIds": list(p["EIPIds"]),
        "FirewallId": p["FirewallId"],
        "IfOpen": int(p.get("IfOpen") or 0),
        "Tag": p.get("Tag") or "Default",
        "Remark": p.get("Remark", ""),
        "Region": p["Region"],
    }
    return {"NATGWId": cloud.add("natgw", "natgw", fields, "Available", "Available").id}


def _natgw_view(cloud: FakeCloud, record: Record) -> dict[str, Any]:
    f = record.fields
    subnets = [cloud.kind("subnet").get(i) for i in f["SubnetIds"]]
    eips = [cloud.kind("eip")[i] for i in f["EIPIds"] if i in cloud.kind("eip")]
    return {
        "NATGWId": record.id,
        "NATGWName": f["NATGWName"],
        "VPCId": f["VPCId"],
        "VPCName": f["VPCName"],
        "FirewallId": f["FirewallId"],
        "Tag": f["Tag"],
        "Remark": f["Remark"],
        "CreateTime": f["CreateTime"],
        "IsSnatpoolEnabled": "disable",
        "PolicyId": [],
        "SubnetSet": [
            {
                "SubnetworkId": s.id,
                "Subnet": f"{s.fields['Subnet']}/{s.fields['Netmask']}",
                "SubnetName": s.fields["SubnetName"],
            }
            for s in subnets
            if s is not None
        ],
        "IPSet": [
            {
                "EIPId": e.id,
                "Bandwidth": e.fields["Bandwidth"],
                "BandwidthType": "Bandwidth",
                "Weight": 100,
                "IPResInfo": [
                    {"EIP": a["IP"], "OperatorName": a["OperatorName"]} for a in e.fields["EIPAddr"]
                ],
            }
            for e in eips
        ],
    }


def describe_natgw(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region")
    ids = p.get("NATGWIds") or []
    records = cloud.poll("natgw")
    # An unknown id is an error, not an empty list (TF service_ucloud_vpc.go:89).
    missing = [i for i in ids if i not in {r.id for r in records}]
    if missing:
        raise ApiError(NATGW_NOT_FOUND, f"{NEUTRAL_MESSAGE} [{missing[0]}]")
    items = [
        _natgw_view(cloud, r)
        for r in records
        if r.fields["Region"] == p["Region"] and (not ids or r.id in ids)
    ]
    return {"DataSet": page(items, p), "TotalCount": len(items)}


def update_natgw(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "NATGWId")
    record = cloud.get("natgw", p["NATGWId"], "NATGW")
    for key in ("NATGWName", "Tag", "Remark"):
        if key in p:
            record.fields[key] = p[key]
    return {}


def update_natgw_subnet(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "NATGWId", "SubnetworkIds")
    record = cloud.get("natgw", p["NATGWId"], "NATGW")
    _subnets_of_vpc(cloud, record.fields["VPCId"], list(p["SubnetworkIds"]))
    record.fields["SubnetIds"] = list(p["SubnetworkIds"])
    return {}


def enable_white_list(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "NATGWId", "IfOpen")
    record = cloud.get("natgw", p["NATGWId"], "NATGW")
    if str(p["IfOpen"]) not in ("0", "1"):
        raise ApiError(BAD_PARAM, f"{NEUTRAL_MESSAGE} [IfOpen {p['IfOpen']}]")
    record.fields["IfOpen"] = int(p["IfOpen"])
    return {}


def delete_natgw(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "NATGWId")
    record = cloud.get("natgw", p["NATGWId"], "NATGW")
    if str(p.get("ReleaseEip", "")).lower() == "true":
        for eip_id in record.fields["EIPIds"]:
            cloud.kind("eip").pop(eip_id, None)
    # Still listed (and still holding its EIPs and subnets) until it is gone.
    cloud.start_delete(record, "Deleting")
    return {}


HANDLERS: dict[str, Handler] = {
    "AllocateEIP": allocate_eip,
    "DescribeEIP": describe_eip,
    "UpdateEIPAttribute": update_eip_attribute,
    "ModifyEIPBandwidth": modify_eip_bandwidth,
    "ReleaseEIP": release_eip,
    "DescribeFirewall": describe_firewall,
    "CreateNATGW": create_natgw,
    "DescribeNATGW": describe_natgw,
    "UpdateNATGW": update_natgw,
    "UpdateNATGWSubnet": update_natgw_subnet,
    "EnableWhiteList": enable_white_list,
    "DeleteNATGW": delete_natgw,
}

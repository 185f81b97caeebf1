"""ucloud_nat_gateway as a Pulumi dynamic resource: CreateNATGW / DescribeNATGW / UpdateNATGW /
UpdateNATGWSubnet / EnableWhiteList / DeleteNATGW, plus DescribeFirewall for the default firewall.

Binding a subnet to the gateway is what gives every host in it outbound internet (SNAT through
the gateway's EIP); no per-host rule is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from components.ucloud.api import UCloudApi
from components.ucloud.base import AVAILABLE, Live, Timings, UCloudProvider
from components.ucloud.errors import UCloudProviderError
from components.ucloud.resource import MODULE, args_defaults, resource_props
from components.ucloud.validation import Checker, is_unknown

# CreateNATGW requires a firewall. With none given we use the project's built-in
# "recommend non web" group: it opens the fewest inbound ports (SSH, RDP, ICMP) of the
# defaults, and a gateway that only does SNAT needs no inbound port at all.
DEFAULT_FIREWALL_TYPE = "recommend non web"
ID_LISTS = ("subnet_ids", "eip_ids")
ATTRIBUTES = ("name", "tag", "remark")


class NoDefaultFirewallError(UCloudProviderError):
    """The project has no built-in firewall to give the gateway, and none was named."""


def _sorted_ids(value: Any) -> Any:
    """UCloud treats these lists as sets; sorting keeps diff from seeing a reorder as a change."""
    if isinstance(value, list | tuple) and not any(is_unknown(v) for v in value):
        return sorted(str(v) for v in value)
    return value


@dataclass
class NatGatewayArgs:
    """Inputs of a NAT gateway; names follow the Terraform resource ucloud_nat_gateway
    (its `security_group` is our `firewall_id`, its single `eip_id` our `eip_ids`).

    firewall_id: "" picks the project's built-in "recommend non web" firewall.
    enable_white_list: True lets only white-listed hosts out (none are, so keep it False).
    """

    region: pulumi.Input[str]
    name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    eip_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    firewall_id: pulumi.Input[str] = ""
    project_id: pulumi.Input[str] | None = None
    tag: pulumi.Input[str] = "Default"
    remark: pulumi.Input[str] = ""
    enable_white_list: pulumi.Input[bool] = False


class NatGatewayProvider(UCloudProvider):
    """Name, tag, remark, subnets and the white-list switch change in place; the VPC, the
    EIPs and the firewall replace the gateway (as in the Terraform provider)."""

    kind = "NAT gateway"
    defaults = args_defaults(NatGatewayArgs)
    updatable = frozenset({"name", "tag", "remark", "subnet_ids", "enable_white_list"})

    def normalize(self, news: Mapping[str, Any]) -> dict[str, Any]:
        inputs = super().normalize(news)
        for key in ID_LISTS:
            inputs[key] = _sorted_ids(inputs.get(key))
        return inputs

    def validate(self, checker: Checker, olds: Mapping[str, Any]) -> None:
        checker.region()
        checker.text("name")
        checker.text("vpc_id")
        checker.text("firewall_id", required=False)
        checker.text("tag", required=False)
        checker.text("remark", required=False, max_len=255)
        checker.boolean("enable_white_list")
        for key, what in (("subnet_ids", "subnet ids"), ("eip_ids", "EIP ids")):
            ids = checker.inputs.get(key)
            if is_unknown(ids):
                continue
            if (
                not isinstance(ids, list | tuple)
                or not ids
                or not all(isinstance(i, str) and i for i in ids)
            ):
                checker.fail(key, ids, f"a non-empty list of {what}")

    # ---- UCloud calls ---------------------------------------------------------------
    def describe(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> Live | None:
        item = api.describe_one(
            "vpc", "describe_natgw", {"NATGWIds": [id_]}, "DataSet", "NATGWId", id_
        )
        if item is None:
            return None
        return Live(
            AVAILABLE,
            {
                "name": item.get("NATGWName"),
                "tag": item.get("Tag"),
                "remark": item.get("Remark") or "",
                "vpc_id": item.get("VPCId"),
                "subnet_ids": sorted(s["SubnetworkId"] for s in item.get("SubnetSet") or []),
                "eip_ids": sorted(ip["EIPId"] for ip in item.get("IPSet") or []),
                "effective_firewall_id": item.get("FirewallId"),
                "create_time": int(item.get("CreateTime") or 0),
            },
        )

    def find(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str | None:
        items = api.paged(lambda page: api.call_once("vpc", "describe_natgw", page), "DataSet")
        for item in items:
            if item.get("NATGWName") == inputs["name"] and item.get("VPCId") == inputs["vpc_id"]:
                return str(item["NATGWId"])
        return None

    def default_firewall(self, api: UCloudApi) -> str:
        """The id of the project's built-in "recommend non web" firewall."""
        firewalls = api.paged(
            lambda page: api.call_once("unet", "describe_firewall", page), "DataSet"
        )
        for firewall in firewalls:
            if firewall.get("Type") == DEFAULT_FIREWALL_TYPE:
                return str(firewall["FWId"])
        raise NoDefaultFirewallError(
            f"firewall_id: got ''; no firewall of type {DEFAULT_FIREWALL_TYPE!r} exists in "
            f"region {api.region} (project {api.project_id or 'default'}); allowed: the id of "
            "an existing firewall (DescribeFirewall lists them)"
        )

    def create_once(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str:
        response = api.call_once(
            "vpc",
            "create_natgw",
            {
                "NATGWName": inputs["name"],
                "VPCId": inputs["vpc_id"],
                "SubnetworkIds": list(inputs["subnet_ids"]),
                "EIPIds": list(inputs["eip_ids"]),
                "FirewallId": inputs["firewall_id"] or self.default_firewall(api),
                "IfOpen": 1 if inputs["enable_white_list"] else 0,
                "Tag": inputs["tag"],
                "Remark": inputs["remark"],
            },
        )
        return str(response["NATGWId"])

    def apply_update(
        self, api: UCloudApi, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any]
    ) -> None:
        if any(olds.get(key) != news[key] for key in ATTRIBUTES):
            api.call(
                "vpc",
                "update_natgw",
                {
                    "NATGWId": id_,
                    "NATGWName": news["name"],
                    "Tag": news["tag"],
                    "Remark": news["remark"],
                },
            )
        if _sorted_ids(olds.get("subnet_ids")) != news["subnet_ids"]:
            api.call(
                "vpc",
                "update_natgw_subnet",
                {"NATGWId": id_, "SubnetworkIds": list(news["subnet_ids"])},
            )
        if bool(olds.get("enable_white_list")) != news["enable_white_list"]:
            api.call(
                "vpc",
                "enable_white_list",
                {"NATGWId": id_, "IfOpen": 1 if news["enable_white_list"] else 0},
            )

    def remove(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        # The EIPs are resources of their own: unbind them, never release them here.
        api.call_once("vpc", "delete_natgw", {"NATGWId": id_, "ReleaseEip": False})


class NatGateway(Resource, module=MODULE, name="NatGateway"):
    """A UCloud NAT gateway giving its subnets outbound internet through its EIPs.

    Its id is the NAT gateway id (natgw-...); `effective_firewall_id` is the firewall in use.
    """

    region: pulumi.Output[str]
    project_id: pulumi.Output[str | None]
    name: pulumi.Output[str]
    vpc_id: pulumi.Output[str]
    subnet_ids: pulumi.Output[list[str]]
    eip_ids: pulumi.Output[list[str]]
    firewall_id: pulumi.Output[str]
    tag: pulumi.Output[str]
    remark: pulumi.Output[str]
    enable_white_list: pulumi.Output[bool]
    effective_firewall_id: pulumi.Output[str]
    create_time: pulumi.Output[int]

    def __init__(
        self,
        resource_name: str,
        args: NatGatewayArgs,
        opts: pulumi.ResourceOptions | None = None,
        timings: Timings | None = None,
    ) -> None:
        props = resource_props(args, computed=["effective_firewall_id", "create_time"])
        super().__init__(NatGatewayProvider(timings), resource_name, props, opts)

"""ucloud_subnet as a Pulumi dynamic resource: CreateSubnet / DescribeSubnet /
UpdateSubnetAttribute / DeleteSubnet.

An unknown subnet id gives an empty DataSet (terraform-provider-ucloud
ucloud/service_ucloud_vpc.go:44)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from components.ucloud import vocabulary
from components.ucloud.api import UCloudApi
from components.ucloud.base import AVAILABLE, Live, Timings, UCloudProvider
from components.ucloud.resource import MODULE, args_defaults, resource_props
from components.ucloud.validation import Checker


def _cidr_of(item: Mapping[str, Any]) -> str:
    """DescribeSubnet gives address and netmask apart ("10.0.1.0", "24" or "255.255.255.0")."""
    try:
        return str(ipaddress.ip_network(f"{item.get('Subnet')}/{item.get('Netmask')}"))
    except ValueError:
        return ""


@dataclass
class SubnetArgs:
    """Inputs of a subnet; names follow the Terraform resource ucloud_subnet."""

    region: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    cidr_block: pulumi.Input[str]
    name: pulumi.Input[str]
    project_id: pulumi.Input[str] | None = None
    tag: pulumi.Input[str] = "Default"
    remark: pulumi.Input[str] = ""


class SubnetProvider(UCloudProvider):
    """Name and tag change in place; anything else means a new subnet."""

    kind = "subnet"
    defaults = args_defaults(SubnetArgs)
    updatable = frozenset({"name", "tag"})

    def validate(self, checker: Checker, olds: Mapping[str, Any]) -> None:
        checker.region()
        checker.text("vpc_id")
        checker.text("name")
        checker.text("tag", required=False)
        checker.text("remark", required=False, max_len=255)
        if checker.inputs.get("cidr_block") in (None, ""):
            checker.fail("cidr_block", checker.inputs.get("cidr_block"), "a value is required")
        else:
            checker.private_cidr(
                "cidr_block", checker.inputs["cidr_block"], vocabulary.SUBNET_MIN_PREFIX, 32
            )

    def _list(self, api: UCloudApi, extra: dict[str, Any]) -> list[dict[str, Any]]:
        return list(
            api.paged(
                lambda page: api.call_once("vpc", "describe_subnet", {**extra, **page}), "DataSet"
            )
        )

    def describe(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> Live | None:
        item = api.describe_one(
            "vpc", "describe_subnet", {"SubnetId": id_}, "DataSet", "SubnetId", id_
        )
        if item is None:
            return None
        return Live(
            AVAILABLE,
            {"name": item.get("SubnetName"), "tag": item.get("Tag"), "cidr_block": _cidr_of(item)},
        )

    def find(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str | None:
        # A CIDR is unique inside a VPC, so it identifies the subnet an earlier try made.
        for item in self._list(api, {"VPCId": inputs["vpc_id"]}):
            if _cidr_of(item) == inputs["cidr_block"] and item.get("SubnetName") == inputs["name"]:
                return str(item["SubnetId"])
        return None

    def create_once(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str:
        network = ipaddress.ip_network(inputs["cidr_block"])
        response = api.call_once(
            "vpc",
            "create_subnet",
            {
                "VPCId": inputs["vpc_id"],
                "Subnet": str(network.network_address),
                "Netmask": network.prefixlen,
                "SubnetName": inputs["name"],
                "Tag": inputs["tag"],
                "Remark": inputs["remark"],
            },
        )
        return str(response["SubnetId"])

    def apply_update(
        self, api: UCloudApi, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any]
    ) -> None:
        api.call(
            "vpc",
            "update_subnet_attribute",
            {"SubnetId": id_, "Name": news["name"], "Tag": news["tag"]},
        )

    def remove(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        # RetCode 4411 (UCloud still releasing what used the subnet) is sent again for up to
        # 10 minutes by UCloudProvider.remove_when_released, as the Terraform provider does.
        api.call_once("vpc", "delete_subnet", {"SubnetId": id_})


class Subnet(Resource, module=MODULE, name="Subnet"):
    """A subnet of a UCloud VPC. Its id is the subnet id (subnet-...)."""

    region: pulumi.Output[str]
    project_id: pulumi.Output[str | None]
    vpc_id: pulumi.Output[str]
    cidr_block: pulumi.Output[str]
    name: pulumi.Output[str]
    tag: pulumi.Output[str]
    remark: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        args: SubnetArgs,
        opts: pulumi.ResourceOptions | None = None,
        timings: Timings | None = None,
    ) -> None:
        props = resource_props(args, computed=[])
        super().__init__(SubnetProvider(timings), resource_name, props, opts)

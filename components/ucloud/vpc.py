"""ucloud_vpc as a Pulumi dynamic resource: CreateVPC / DescribeVPC / DeleteVPC.

An unknown VPC id gives an empty DataSet, not an error (terraform-provider-ucloud
ucloud/service_ucloud_vpc.go:23)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from components.ucloud.api import UCloudApi
from components.ucloud.base import AVAILABLE, Live, Timings, UCloudProvider
from components.ucloud.resource import MODULE, args_defaults, resource_props
from components.ucloud.validation import Checker, is_unknown


def _vpc_outputs(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"create_time": int(item.get("CreateTime") or 0)}


@dataclass
class VpcArgs:
    """Inputs of a VPC; names follow the Terraform resource ucloud_vpc."""

    region: pulumi.Input[str]
    name: pulumi.Input[str]
    cidr_blocks: pulumi.Input[Sequence[pulumi.Input[str]]]
    project_id: pulumi.Input[str] | None = None
    tag: pulumi.Input[str] = "Default"
    remark: pulumi.Input[str] = ""


class VpcProvider(UCloudProvider):
    """No UCloud action renames or retags a VPC, so every change replaces it."""

    kind = "VPC"
    defaults = args_defaults(VpcArgs)

    def validate(self, checker: Checker, olds: Mapping[str, Any]) -> None:
        checker.region()
        checker.text("name")
        checker.text("tag", required=False)
        checker.text("remark", required=False, max_len=255)
        blocks = checker.inputs.get("cidr_blocks")
        if is_unknown(blocks):
            return
        if not isinstance(blocks, list | tuple) or not blocks:
            checker.fail("cidr_blocks", blocks, "a non-empty list of private IPv4 CIDRs")
            return
        for block in blocks:
            # Each RFC 1918 block's own prefix limits (vocabulary.VPC_RANGES).
            checker.private_cidr("cidr_blocks", block, 0, 32)

    def _list(self, api: UCloudApi, extra: dict[str, Any]) -> list[dict[str, Any]]:
        # DescribeVPC requires ProjectId (SDK schema and vpc-api/describe_vpc.md): UCloudApi
        # sends the configured project, or else looks up the default one.
        return list(
            api.paged(
                lambda page: api.call_once("vpc", "describe_vpc", {**extra, **page}), "DataSet"
            )
        )

    def describe(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> Live | None:
        items = [i for i in self._list(api, {"VPCIds": [id_]}) if i.get("VPCId") == id_]
        return Live(AVAILABLE, _vpc_outputs(items[0])) if items else None

    def find(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str | None:
        wanted = sorted(inputs["cidr_blocks"])
        for item in self._list(api, {"Tag": inputs["tag"]}):
            if item.get("Name") == inputs["name"] and sorted(item.get("Network") or []) == wanted:
                return str(item["VPCId"])
        return None

    def create_once(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str:
        response = api.call_once(
            "vpc",
            "create_vpc",
            {
                "Name": inputs["name"],
                "Network": list(inputs["cidr_blocks"]),
                "Tag": inputs["tag"],
                "Remark": inputs["remark"],
            },
        )
        return str(response["VPCId"])

    def remove(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        api.call_once("vpc", "delete_vpc", {"VPCId": id_})


class Vpc(Resource, module=MODULE, name="Vpc"):
    """A UCloud VPC. Its id is the VPC id (uvnet-...)."""

    region: pulumi.Output[str]
    project_id: pulumi.Output[str | None]
    name: pulumi.Output[str]
    cidr_blocks: pulumi.Output[list[str]]
    tag: pulumi.Output[str]
    remark: pulumi.Output[str]
    create_time: pulumi.Output[int]

    def __init__(
        self,
        resource_name: str,
        args: VpcArgs,
        opts: pulumi.ResourceOptions | None = None,
        timings: Timings | None = None,
    ) -> None:
        props = resource_props(args, computed=["create_time"])
        super().__init__(VpcProvider(timings), resource_name, props, opts)

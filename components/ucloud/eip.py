"""ucloud_eip as a Pulumi dynamic resource: AllocateEIP / DescribeEIP / UpdateEIPAttribute /
ModifyEIPBandwidth / ReleaseEIP."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, Resource

from components.ucloud import vocabulary
from components.ucloud.api import UCloudApi
from components.ucloud.base import Live, Timings, UCloudProvider
from components.ucloud.errors import InvalidUpdateError
from components.ucloud.resource import MODULE, args_defaults, resource_props
from components.ucloud.validation import CHARGE_TYPES, Checker

# Our names -> AllocateEIP's OperatorName (the SDK docs spell BGP "Bgp").
OPERATOR_NAMES = vocabulary.EIP_INTERNET_TYPES
# Bandwidth limits per pay mode at AllocateEIP (vocabulary.EIP_BANDWIDTH_MBPS).
BANDWIDTH_LIMITS = {mode: r.high for mode, r in vocabulary.EIP_BANDWIDTH_MBPS.items()}
FREE, USED = "free", "used"
ATTRIBUTES = ("name", "tag", "remark")


def _public_ip(item: Mapping[str, Any]) -> str:
    addresses = item.get("EIPAddr") or []
    return str(addresses[0].get("IP") or "") if addresses else ""


def _operator_matches(item: Mapping[str, Any], internet_type: str) -> bool:
    """DescribeEIP answers "BGP" where AllocateEIP was sent "Bgp": compare without case."""
    wanted = OPERATOR_NAMES.get(internet_type, internet_type).lower()
    return any(
        str(addr.get("OperatorName") or "").lower() == wanted for addr in item.get("EIPAddr") or []
    )


def bandwidth_update_problem(charge_mode: str, bandwidth: int) -> str | None:
    """Why ModifyEIPBandwidth would refuse `bandwidth` (Mbps) for this pay mode, or None.

    For check(): an EIP allocated above these limits can keep its bandwidth, but an
    in-place change must land inside them.
    """
    allowed = vocabulary.EIP_MODIFY_BANDWIDTH_MBPS.get(charge_mode)
    if allowed is None:
        return (
            f"bandwidth: no in-place change is known for charge_mode {charge_mode!r}; "
            f"allowed charge modes: {', '.join(vocabulary.EIP_MODIFY_BANDWIDTH_MBPS)}"
        )
    if allowed.allows(bandwidth):
        return None
    return (
        f"bandwidth: got {bandwidth}; an in-place change (ModifyEIPBandwidth) allows "
        f"{allowed.low}-{allowed.high} Mbps for charge_mode {charge_mode!r}"
    )


@dataclass
class EipArgs:
    """Inputs of an elastic IP; names follow the Terraform resource ucloud_eip.

    internet_type: "BGP" (mainland regions) or "International"; charge_mode: "Bandwidth"
    or "Traffic"; charge_type: "Dynamic" (hourly), "Month" or "Year".
    """

    region: pulumi.Input[str]
    name: pulumi.Input[str]
    bandwidth: pulumi.Input[int] = 1
    internet_type: pulumi.Input[str] = "BGP"
    charge_type: pulumi.Input[str] = "Dynamic"
    charge_mode: pulumi.Input[str] = "Bandwidth"
    project_id: pulumi.Input[str] | None = None
    tag: pulumi.Input[str] = "Default"
    remark: pulumi.Input[str] = ""


class EipProvider(UCloudProvider):
    """Name, tag, remark and bandwidth change in place; the line and the billing replace."""

    kind = "EIP"
    defaults = args_defaults(EipArgs)
    updatable = frozenset({"name", "tag", "remark", "bandwidth"})
    integer_fields = frozenset({"bandwidth"})
    # "freeze" (frozen for arrears) is neither: it stays pending until the wait times out.
    ready_states = frozenset({FREE, USED})

    def validate(self, checker: Checker, olds: Mapping[str, Any]) -> None:
        checker.region()
        checker.text("name")
        checker.text("tag", required=False)
        checker.text("remark", required=False, max_len=255)
        checker.choice("internet_type", OPERATOR_NAMES)
        checker.choice("charge_type", CHARGE_TYPES)
        checker.choice("charge_mode", BANDWIDTH_LIMITS)
        mode = checker.inputs.get("charge_mode")
        # An unknown or bad mode: judge the bandwidth by the stricter (Traffic) limit.
        limit = BANDWIDTH_LIMITS.get(mode, 0) if isinstance(mode, str) else 0
        limit = limit or BANDWIDTH_LIMITS["Traffic"]
        checker.integer("bandwidth", 1, limit)
        old = self.normalize(olds) if olds else {}
        new_bandwidth = checker.inputs.get("bandwidth")
        if (
            isinstance(old.get("bandwidth"), int)
            and isinstance(new_bandwidth, int)
            and new_bandwidth != old["bandwidth"]
            and old.get("charge_mode") == mode
            and (problem := bandwidth_update_problem(str(mode), new_bandwidth))
        ):
            checker.failures.append(CheckFailure("bandwidth", problem))

    def describe(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> Live | None:
        item = api.describe_one("unet", "describe_eip", {"EIPIds": [id_]}, "EIPSet", "EIPId", id_)
        if item is None:
            return None
        return Live(
            str(item.get("Status") or ""),
            {
                "public_ip": _public_ip(item),
                "name": item.get("Name"),
                "tag": item.get("Tag"),
                "remark": item.get("Remark") or "",
                "bandwidth": int(item.get("Bandwidth") or 0),
            },
        )

    def find(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str | None:
        # Only an unbound EIP can be the one an interrupted create made: never adopt one in use.
        items = api.paged(lambda page: api.call_once("unet", "describe_eip", page), "EIPSet")
        for item in items:
            if (
                item.get("Name") == inputs["name"]
                and item.get("Tag") == inputs["tag"]
                and item.get("Status") == FREE
                and _operator_matches(item, inputs["internet_type"])
            ):
                return str(item["EIPId"])
        return None

    def create_once(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str:
        response = api.call_once(
            "unet",
            "allocate_eip",
            {
                "Name": inputs["name"],
                "Bandwidth": inputs["bandwidth"],
                "OperatorName": OPERATOR_NAMES[inputs["internet_type"]],
                "ChargeType": inputs["charge_type"],
                "PayMode": inputs["charge_mode"],
                "Tag": inputs["tag"],
                "Remark": inputs["remark"],
            },
        )
        return str(response["EIPSet"][0]["EIPId"])

    def apply_update(
        self, api: UCloudApi, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any]
    ) -> None:
        resize = olds.get("bandwidth") != news["bandwidth"]
        # Refused before any call, so a bad change leaves the EIP untouched.
        problem = (
            bandwidth_update_problem(str(news["charge_mode"]), int(news["bandwidth"]))
            if resize
            else None
        )
        if problem:
            raise InvalidUpdateError(f"EIP {id_}: {problem}")
        if any(olds.get(key) != news[key] for key in ATTRIBUTES):
            api.call(
                "unet",
                "update_eip_attribute",
                {"EIPId": id_, "Name": news["name"], "Tag": news["tag"], "Remark": news["remark"]},
            )
        if resize:
            api.call("unet", "modify_eip_bandwidth", {"EIPId": id_, "Bandwidth": news["bandwidth"]})

    def remove(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        # UCloud only releases an unbound EIP; the NAT gateway using it is deleted first.
        api.call_once("unet", "release_eip", {"EIPId": id_})


class Eip(Resource, module=MODULE, name="Eip"):
    """A UCloud elastic IP. Its id is the EIP id (eip-...); `public_ip` is its address."""

    region: pulumi.Output[str]
    project_id: pulumi.Output[str | None]
    name: pulumi.Output[str]
    bandwidth: pulumi.Output[int]
    internet_type: pulumi.Output[str]
    charge_type: pulumi.Output[str]
    charge_mode: pulumi.Output[str]
    tag: pulumi.Output[str]
    remark: pulumi.Output[str]
    public_ip: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        args: EipArgs,
        opts: pulumi.ResourceOptions | None = None,
        timings: Timings | None = None,
    ) -> None:
        props = resource_props(args, computed=["public_ip"])
        super().__init__(EipProvider(timings), resource_name, props, opts)

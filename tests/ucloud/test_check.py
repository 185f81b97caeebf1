"""check(): every bad input is reported with its field, its value and what is allowed."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.runtime.rpc import UNKNOWN

from components.ucloud.eip import EipProvider
from components.ucloud.nat_gateway import NatGatewayProvider
from components.ucloud.subnet import SubnetProvider
from components.ucloud.ufs_mount_point import UfsMountPointProvider
from components.ucloud.ufs_volume import UfsVolumeProvider
from components.ucloud.uk8s_cluster import Uk8sClusterProvider
from components.ucloud.uk8s_node import Uk8sNodeProvider
from components.ucloud.vpc import VpcProvider
from tests.ucloud.conftest import (
    cluster_inputs,
    eip_inputs,
    mount_inputs,
    nat_inputs,
    node_inputs,
    subnet_inputs,
    volume_inputs,
    vpc_inputs,
)

NETWORK = {"vpc_id": "uvnet-1", "subnet_id": "subnet-1"}
# Published cn-bj2 zones (API summary/regionlist.md): there is no cn-bj2-04.
ZONES = ["cn-bj2-02", "cn-bj2-03", "cn-bj2-05"]
VOLUME = volume_inputs()
MOUNT = mount_inputs("ufs-1", NETWORK)


def reasons(provider: Any, inputs: dict[str, Any], olds: dict[str, Any] | None = None) -> dict:
    result = provider.check(olds or {}, inputs)
    return {failure.property: failure.reason for failure in result.failures}


@pytest.mark.parametrize(
    ("provider", "inputs"),
    [
        (VpcProvider(), vpc_inputs()),
        (SubnetProvider(), subnet_inputs("uvnet-1")),
        (UfsVolumeProvider(), VOLUME),
        (UfsMountPointProvider(), MOUNT),
        (Uk8sClusterProvider(), cluster_inputs(NETWORK, master_zones=ZONES)),
        (Uk8sNodeProvider(), node_inputs("uk8s-1", "subnet-1")),
        (EipProvider(), eip_inputs()),
        (NatGatewayProvider(), nat_inputs(NETWORK, "eip-1")),
    ],
    ids=["vpc", "subnet", "ufs", "mount", "cluster", "node", "eip", "nat"],
)
def test_good_inputs_pass_and_get_defaults(provider: Any, inputs: dict[str, Any]) -> None:
    result = provider.check({}, inputs)
    assert result.failures == []
    assert set(provider.defaults) <= set(result.inputs)


@pytest.mark.parametrize(
    ("provider", "inputs", "field", "bad", "allowed"),
    [
        (
            VpcProvider(),
            vpc_inputs(cidr_blocks=["8.8.8.0/24"]),
            "cidr_blocks",
            "8.8.8.0/24",
            "private IPv4",
        ),
        (VpcProvider(), vpc_inputs(cidr_blocks=[]), "cidr_blocks", "[]", "non-empty list"),
        (VpcProvider(), vpc_inputs(region=""), "region", "''", "a value is required"),
        (
            SubnetProvider(),
            subnet_inputs("uvnet-1", cidr_block="10.0.1.5/24"),
            "cidr_block",
            "10.0.1.5/24",
            "10.0.0.0/8 with /16-/29",
        ),
        (
            UfsVolumeProvider(),
            {**VOLUME, "size": 450},
            "size",
            "450",
            "from 500 to 100000 in steps of 100",
        ),
        (UfsVolumeProvider(), {**VOLUME, "size": 550}, "size", "550", "steps of 100"),
        (
            UfsVolumeProvider(),
            {**VOLUME, "storage_type": "Turbo"},
            "storage_type",
            "Turbo",
            "Advanced, Basic",
        ),
        (UfsVolumeProvider(), {**VOLUME, "protocol_type": "SMB"}, "protocol_type", "SMB", "NFSv4"),
        (
            UfsVolumeProvider(),
            {**VOLUME, "charge_type": "Weekly"},
            "charge_type",
            "Weekly",
            "Dynamic, Month, Year",
        ),
        (
            UfsMountPointProvider(),
            {**MOUNT, "subnet_id": None},
            "subnet_id",
            "None",
            "a value is required",
        ),
        (
            Uk8sClusterProvider(),
            cluster_inputs(NETWORK, master_zones=["a", "b"]),
            "master_zones",
            "['a', 'b']",
            "exactly 3",
        ),
        (
            Uk8sClusterProvider(),
            cluster_inputs(NETWORK, master_mem=5000),
            "master_mem",
            "5000",
            "steps of 1024",
        ),
        (
            Uk8sClusterProvider(),
            cluster_inputs(NETWORK, master_machine_type="Z"),
            "master_machine_type",
            "Z",
            "one of",
        ),
        (
            Uk8sClusterProvider(),
            cluster_inputs(NETWORK, service_cidr="10.0.0.0/8"),
            "service_cidr",
            "10.0.0.0/8",
            "10.0.0.0/8 with /12-/24",
        ),
        (
            Uk8sClusterProvider(),
            cluster_inputs(NETWORK, external_api_server="yes"),
            "external_api_server",
            "yes",
            "true or false",
        ),
        (
            Uk8sNodeProvider(),
            node_inputs("c", "s", gpu_type=None),
            "gpu_type",
            "None",
            "a value is required",
        ),
        (Uk8sNodeProvider(), node_inputs("c", "s", count=0), "count", "0", "from 1 to 50"),
        (
            Uk8sNodeProvider(),
            node_inputs("c", "s", taints=["gpu:NoSchedule"]),
            "taints",
            "gpu:NoSchedule",
            "NoSchedule, PreferNoSchedule, NoExecute",
        ),
        (
            Uk8sNodeProvider(),
            node_inputs("c", "s", labels={"a,b": "c"}),
            "labels",
            "a,b",
            "valid Kubernetes label",
        ),
        (
            Uk8sNodeProvider(),
            node_inputs("c", "s", labels={f"k{i}": "v" for i in range(5)}),
            "labels",
            "k4",
            "at most 4 labels",
        ),
        (
            EipProvider(),
            eip_inputs(internet_type="bgp"),
            "internet_type",
            "bgp",
            "BGP, International",
        ),
        (
            EipProvider(),
            eip_inputs(charge_mode="Share"),
            "charge_mode",
            "Share",
            "Bandwidth, Traffic",
        ),
        (
            EipProvider(),
            eip_inputs(charge_type="Weekly"),
            "charge_type",
            "Weekly",
            "Dynamic, Month, Year",
        ),
        (EipProvider(), eip_inputs(bandwidth=0), "bandwidth", "0", "from 1 to 10000"),
        (
            EipProvider(),
            eip_inputs(charge_mode="Traffic", bandwidth=500),
            "bandwidth",
            "500",
            "from 1 to 300",
        ),
        (
            NatGatewayProvider(),
            nat_inputs(NETWORK, "eip-1", subnet_ids=[]),
            "subnet_ids",
            "[]",
            "a non-empty list of subnet ids",
        ),
        (
            NatGatewayProvider(),
            nat_inputs(NETWORK, "eip-1", eip_ids="eip-1"),
            "eip_ids",
            "eip-1",
            "a non-empty list of EIP ids",
        ),
        (
            NatGatewayProvider(),
            nat_inputs(NETWORK, "eip-1", enable_white_list="no"),
            "enable_white_list",
            "no",
            "true or false",
        ),
        (
            NatGatewayProvider(),
            nat_inputs(NETWORK, "eip-1", vpc_id=""),
            "vpc_id",
            "''",
            "a value is required",
        ),
    ],
)
def test_bad_input_names_field_value_and_allowed(
    provider: Any, inputs: dict[str, Any], field: str, bad: str, allowed: str
) -> None:
    found = reasons(provider, inputs)
    assert field in found, found
    assert found[field].startswith(f"{field}: got ")
    assert bad in found[field]
    assert allowed in found[field]


def test_password_rules_are_explained_without_echoing_the_password() -> None:
    found = reasons(Uk8sClusterProvider(), cluster_inputs(NETWORK, password="weakpass"))
    assert "password" in found and "weakpass" not in found["password"]
    assert "upper-case" in found["password"]
    node_found = reasons(Uk8sNodeProvider(), node_inputs("c", "s", password="short1A"))
    assert "short1A" not in node_found["password"] and "8 to 30" in node_found["password"]


def test_ufs_refuses_to_shrink() -> None:
    found = reasons(UfsVolumeProvider(), {**VOLUME, "size": 500}, olds={**VOLUME, "size": 800})
    assert "cannot shrink" in found["size"] and "800" in found["size"]


def test_unknown_values_during_preview_are_not_judged() -> None:
    inputs = cluster_inputs({"vpc_id": UNKNOWN, "subnet_id": UNKNOWN}, master_zones=UNKNOWN)
    assert reasons(Uk8sClusterProvider(), inputs) == {}
    assert reasons(SubnetProvider(), subnet_inputs(UNKNOWN, cidr_block=UNKNOWN)) == {}


def test_check_turns_float_numbers_into_ints() -> None:
    result = UfsVolumeProvider().check({}, {**VOLUME, "size": 600.0})
    assert result.failures == [] and result.inputs["size"] == 600
    assert isinstance(result.inputs["size"], int)


def test_nat_gateway_id_lists_compare_as_sets() -> None:
    provider = NatGatewayProvider()
    olds = provider.check({}, nat_inputs(NETWORK, "eip-1", subnet_ids=["subnet-2", "subnet-1"]))
    again = nat_inputs(NETWORK, "eip-1", subnet_ids=["subnet-1", "subnet-2"])
    assert olds.inputs["subnet_ids"] == ["subnet-1", "subnet-2"]
    assert provider.diff("natgw-1", olds.inputs, again).changes is False
    preview = nat_inputs({"vpc_id": UNKNOWN, "subnet_id": UNKNOWN}, UNKNOWN, subnet_ids=UNKNOWN)
    assert reasons(provider, preview) == {}


def test_masters_are_never_gpu_hosts_and_zones_must_be_published() -> None:
    found = reasons(Uk8sClusterProvider(), cluster_inputs(NETWORK, master_machine_type="G"))
    assert "master_machine_type" in found and "'G'" in found["master_machine_type"]
    unpublished = ["cn-bj2-02", "cn-bj2-03", "cn-bj2-04"]
    found = reasons(Uk8sClusterProvider(), cluster_inputs(NETWORK, master_zones=unpublished))
    assert "cn-bj2-04" in found["master_zones"] and "cn-bj2-05" in found["master_zones"]


def test_o_family_nodes_boot_only_from_rssd() -> None:
    inputs = node_inputs("c", "s", machine_type="O", gpu_type=None, gpu=None)
    assert "CLOUD_RSSD" in reasons(Uk8sNodeProvider(), inputs)["boot_disk_type"]
    ok = reasons(Uk8sNodeProvider(), {**inputs, "boot_disk_type": "CLOUD_RSSD"})
    assert "boot_disk_type" not in ok


def test_gpu_nodes_must_be_in_a_zone_that_sells_the_type() -> None:
    found = reasons(Uk8sNodeProvider(), node_inputs("c", "s", gpu_type="T4", zone="cn-bj2-02"))
    assert "sells T4: cn-bj2-05" in found["zone"]
    t4s = node_inputs("c", "s", gpu_type="T4S", zone="cn-bj2-02")
    assert reasons(Uk8sNodeProvider(), t4s) == {}
    assert "gpu_type" in reasons(Uk8sNodeProvider(), node_inputs("c", "s", gpu_type="L40S"))


class _Recorder:
    def __init__(self) -> None:
        self.sent: dict[str, Any] = {}

    def invoke_once(self, action: str, request: dict[str, Any]) -> dict[str, Any]:
        self.sent = request
        return {"ClusterId": "uk8s-1"}

    def call_once(self, service: str, method: str, request: dict[str, Any]) -> dict[str, Any]:
        assert method == "get_uk8s_versions", method  # the version lookup before the create
        return {"Data": [{"K8sVersion": "1.30.3"}, {"K8sVersion": "1.30.6"}]}


@pytest.mark.parametrize(("machine", "disk"), [("N", "CLOUD_SSD"), ("O", "CLOUD_RSSD")])
def test_masters_send_the_boot_disk_their_family_needs(machine: str, disk: str) -> None:
    provider = Uk8sClusterProvider()
    inputs = provider.check({}, cluster_inputs(NETWORK, master_machine_type=machine)).inputs
    api = _Recorder()
    provider.create_once(api, inputs)  # type: ignore[arg-type]
    assert api.sent["MasterBootDiskType"] == disk

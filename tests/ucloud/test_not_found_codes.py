"""Gone resources, as the fake answers them: each action's documented RetCode (or an empty
list) with a neutral message, so only code-based handling can pass."""

from __future__ import annotations

import re
from typing import Any

import pytest
from ucloud.core.exc import RetCodeException

from components.ucloud.api import UCloudApi
from components.ucloud.base import Timings
from components.ucloud.credentials import resolve_credentials
from components.ucloud.eip import EipProvider
from components.ucloud.nat_gateway import NatGatewayProvider
from components.ucloud.subnet import SubnetProvider
from components.ucloud.ufs_mount_point import UfsMountPointProvider
from components.ucloud.ufs_volume import UfsVolumeProvider
from components.ucloud.vpc import VpcProvider
from tests.fake_ucloud import FakeUCloud
from tests.ucloud.conftest import (
    PROJECT,
    REGION,
    eip_inputs,
    mount_inputs,
    nat_inputs,
    subnet_inputs,
    volume_inputs,
    vpc_inputs,
)

HINTS = re.compile(r"not ?found|not exist|不存在|too many|rate|throttl|限流|频繁|retry", re.I)


def sdk(timings: Timings) -> UCloudApi:
    return UCloudApi(resolve_credentials(), REGION, PROJECT, retry=timings.retry)


def error_of(call: Any) -> RetCodeException:
    with pytest.raises(RetCodeException) as caught:
        call()
    assert not HINTS.search(caught.value.message), caught.value.message
    return caught.value


def test_gone_nat_gateway_is_54002_and_read_as_gone(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    eip = EipProvider(timings).create(eip_inputs())
    provider = NatGatewayProvider(timings)
    nat = provider.create(nat_inputs(network, eip.id))
    provider.delete(nat.id, nat.outs)  # waits until DescribeNATGW answers 54002

    api = sdk(timings)
    gone = error_of(lambda: api.call_once("vpc", "describe_natgw", {"NATGWIds": [nat.id]}))
    assert gone.code == 54002
    before = ucloud_env.count("DescribeNATGW")
    assert provider.read(nat.id, nat.outs).id == ""
    assert ucloud_env.count("DescribeNATGW") == before + 1  # recognised at once, not retried
    provider.delete(nat.id, nat.outs)
    assert ucloud_env.count("DeleteNATGW") == 1


def test_mount_point_of_a_gone_volume_is_65126_and_read_as_gone(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    volume = UfsVolumeProvider(timings).create(volume_inputs())
    mount = UfsMountPointProvider(timings).create(mount_inputs(volume.id, network))
    ucloud_env.cloud.kind("ufs").clear()  # the volume went outside Pulumi

    api = sdk(timings)
    gone = error_of(
        lambda: api.call_once("ufs", "describe_ufs_volume_mountpoint", {"VolumeId": volume.id})
    )
    assert gone.code == 65126
    before = ucloud_env.count("DescribeUFSVolumeMountpoint")
    assert UfsMountPointProvider(timings).read(mount.id, mount.outs).id == ""
    assert ucloud_env.count("DescribeUFSVolumeMountpoint") == before + 1  # not retried


def test_nodes_of_a_gone_cluster_are_94007(ucloud_env: FakeUCloud, timings: Timings) -> None:
    api = sdk(timings)
    gone = error_of(
        lambda: api.call_once("uk8s", "list_uk8s_cluster_node_v2", {"ClusterId": "uk8s-00000000"})
    )
    assert gone.code == 94007


@pytest.mark.parametrize(
    ("service", "method", "args", "items"),
    [
        ("vpc", "describe_vpc", {"VPCIds": ["uvnet-00000000"]}, "DataSet"),
        ("vpc", "describe_subnet", {"SubnetId": "subnet-00000000"}, "DataSet"),
        ("unet", "describe_eip", {"EIPIds": ["eip-00000000"]}, "EIPSet"),
        ("ufs", "describe_ufs_volume_2", {"VolumeId": "ufs-00000000"}, "DataSet"),
    ],
)
def test_other_describes_answer_an_empty_list_for_an_unknown_id(
    ucloud_env: FakeUCloud, timings: Timings, service: str, method: str, args: dict, items: str
) -> None:
    """An empty list, as TF expects (service_ucloud_vpc.go:23, :44, _unet.go:26, _ufs.go:20)."""
    assert sdk(timings).call_once(service, method, args)[items] == []


def test_every_gone_resource_reads_as_gone(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    ghosts = {
        VpcProvider: vpc_inputs(),
        SubnetProvider: subnet_inputs(network["vpc_id"]),
        EipProvider: eip_inputs(),
        UfsVolumeProvider: volume_inputs(),
        NatGatewayProvider: nat_inputs(network, "eip-00000000"),
    }
    ids = {
        VpcProvider: "uvnet-00000000",
        SubnetProvider: "subnet-00000000",
        EipProvider: "eip-00000000",
        UfsVolumeProvider: "ufs-00000000",
        NatGatewayProvider: "natgw-00000000",
    }
    for provider_class, inputs in ghosts.items():
        provider = provider_class(timings)
        assert provider.read(ids[provider_class], inputs).id == "", provider_class.__name__
        provider.delete(ids[provider_class], inputs)  # nothing to delete: no error
    for action in ("DeleteVPC", "DeleteSubnet", "ReleaseEIP", "RemoveUFSVolume", "DeleteNATGW"):
        assert ucloud_env.count(action) == 0

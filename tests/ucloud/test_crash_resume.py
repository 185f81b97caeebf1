"""A create that died after UCloud made the resource must not make a second one on retry."""

from __future__ import annotations

from dataclasses import replace

import pytest

from components.ucloud.base import Timings
from components.ucloud.eip import EipProvider
from components.ucloud.nat_gateway import NatGatewayProvider
from components.ucloud.retry import RetryPolicy
from components.ucloud.subnet import SubnetProvider
from components.ucloud.ufs_mount_point import UfsMountPointProvider
from components.ucloud.ufs_volume import UfsVolumeProvider
from components.ucloud.uk8s_cluster import Uk8sClusterProvider
from components.ucloud.uk8s_node import Uk8sNodeProvider
from components.ucloud.vpc import VpcProvider
from tests.fake_ucloud import FakeUCloud
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


def no_retry(timings: Timings) -> Timings:
    """A provider whose first attempt dies outright, like a killed `pulumi up`."""
    return replace(timings, retry=RetryPolicy(attempts=1, sleep=timings.retry.sleep))


def crash_then_resume(
    fake: FakeUCloud, timings: Timings, provider_type: type, action: str, inputs: dict
) -> str:
    fake.fail_next(action, after_apply=True, message="connection reset")
    with pytest.raises(Exception, match="connection reset"):
        provider_type(no_retry(timings)).create(inputs)
    resumed = provider_type(timings).create(inputs)
    assert fake.count(action) == 1
    return str(resumed.id)


def test_vpc_subnet_and_volume_are_found_not_duplicated(
    ucloud_env: FakeUCloud, timings: Timings
) -> None:
    vpc_id = crash_then_resume(ucloud_env, timings, VpcProvider, "CreateVPC", vpc_inputs())
    assert list(ucloud_env.resources("vpc")) == [vpc_id]
    subnet_id = crash_then_resume(
        ucloud_env, timings, SubnetProvider, "CreateSubnet", subnet_inputs(vpc_id)
    )
    assert list(ucloud_env.resources("subnet")) == [subnet_id]
    volume_id = crash_then_resume(
        ucloud_env, timings, UfsVolumeProvider, "CreateUFSVolume", volume_inputs()
    )
    assert list(ucloud_env.resources("ufs")) == [volume_id]
    mount = mount_inputs(volume_id, {"vpc_id": vpc_id, "subnet_id": subnet_id})
    crash_then_resume(ucloud_env, timings, UfsMountPointProvider, "AddUFSVolumeMountPoint", mount)
    assert len(ucloud_env.resources("ufs")[volume_id].fields["MountPoints"]) == 1


def test_cluster_and_nodes_are_found_not_duplicated(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    cluster_id = crash_then_resume(
        ucloud_env, timings, Uk8sClusterProvider, "CreateUK8SClusterV2", cluster_inputs(network)
    )
    assert list(ucloud_env.resources("cluster")) == [cluster_id]
    crash_then_resume(
        ucloud_env,
        timings,
        Uk8sNodeProvider,
        "AddUK8SUHostNode",
        node_inputs(cluster_id, network["subnet_id"], count=2),
    )
    assert len(ucloud_env.resources("node")) == 2


def test_a_namesake_in_another_vpc_is_not_adopted(ucloud_env: FakeUCloud, timings: Timings) -> None:
    first = VpcProvider(timings).create(vpc_inputs())
    second = VpcProvider(timings).create(vpc_inputs(cidr_blocks=["172.16.0.0/16"]))
    assert first.id != second.id


def test_eip_and_nat_gateway_are_found_not_duplicated(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    eip_id = crash_then_resume(ucloud_env, timings, EipProvider, "AllocateEIP", eip_inputs())
    assert list(ucloud_env.resources("eip")) == [eip_id]
    nat_id = crash_then_resume(
        ucloud_env, timings, NatGatewayProvider, "CreateNATGW", nat_inputs(network, eip_id)
    )
    assert list(ucloud_env.resources("natgw")) == [nat_id]


def test_an_eip_in_use_is_never_adopted(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    used = EipProvider(timings).create(eip_inputs())
    NatGatewayProvider(timings).create(nat_inputs(network, used.id))
    fresh = EipProvider(timings).create(eip_inputs())  # same name and tag, but the first is bound
    assert fresh.id != used.id
    assert ucloud_env.count("AllocateEIP") == 2

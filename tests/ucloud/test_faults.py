"""Transient errors, throttling, failed states and timeouts, injected into the fake API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from components.ucloud.api import UCloudApi
from components.ucloud.base import Timings
from components.ucloud.eip import EipProvider
from components.ucloud.errors import ResourceFailedError, WaitTimeoutError
from components.ucloud.nat_gateway import NatGatewayProvider
from components.ucloud.retry import RetryPolicy
from components.ucloud.subnet import SubnetProvider
from components.ucloud.ufs_volume import UfsVolumeProvider
from components.ucloud.uk8s_cluster import Uk8sClusterProvider
from components.ucloud.uk8s_node import Uk8sNodeProvider
from components.ucloud.vpc import VpcProvider
from tests.fake_ucloud import FakeUCloud
from tests.ucloud.conftest import (
    SleepLog,
    cluster_inputs,
    eip_inputs,
    fast_timings,
    nat_inputs,
    node_inputs,
    subnet_inputs,
    volume_inputs,
    vpc_inputs,
)


@pytest.mark.parametrize("after_apply", [False, True], ids=["lost-request", "lost-answer"])
def test_transient_error_on_create_leaves_exactly_one_vpc(
    ucloud_env: FakeUCloud, timings: Timings, after_apply: bool
) -> None:
    ucloud_env.fail_next("CreateVPC", after_apply=after_apply)
    created = VpcProvider(timings).create(vpc_inputs())
    assert list(ucloud_env.resources("vpc")) == [created.id]
    assert ucloud_env.count("CreateVPC") == (1 if after_apply else 2)


def test_transient_errors_while_polling_are_retried(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    ucloud_env.fail_next("ListUK8SClusterV2", times=2)
    ucloud_env.http_error_next("ListUK8SClusterV2", status=503)
    cluster = Uk8sClusterProvider(timings).create(cluster_inputs(network))
    assert cluster.outs["status"] == "RUNNING"
    assert list(ucloud_env.resources("cluster")) == [cluster.id]


def test_throttling_is_retried_with_growing_delays(ucloud_env: FakeUCloud) -> None:
    sleeps = SleepLog()
    ucloud_env.throttle_next("CreateUFSVolume", times=3)
    volume = UfsVolumeProvider(fast_timings(sleep=sleeps)).create(volume_inputs())
    assert list(ucloud_env.resources("ufs")) == [volume.id]
    assert ucloud_env.count("CreateUFSVolume") == 4
    backoff = sleeps.delays[:3]
    assert backoff == sorted(backoff) and backoff[0] < backoff[2]


def test_retries_are_bounded(ucloud_env: FakeUCloud, timings: Timings) -> None:
    ucloud_env.throttle_next("CreateVPC", times=100)
    with pytest.raises(Exception, match="CreateVPC - 153"):
        VpcProvider(timings).create(vpc_inputs())
    assert ucloud_env.count("CreateVPC") == timings.retry.attempts


def test_permanent_errors_are_not_retried(ucloud_env: FakeUCloud, timings: Timings) -> None:
    ucloud_env.fail_next("CreateVPC", code=230, message="Params [Network] not available")
    with pytest.raises(Exception, match="Params \\[Network\\] not available"):
        VpcProvider(timings).create(vpc_inputs())
    assert ucloud_env.count("CreateVPC") == 1


@pytest.mark.parametrize("state", ["CREATEFAILED", "ABNORMAL"])
def test_failed_cluster_is_reported_and_removed(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], state: str
) -> None:
    ucloud_env.next_creation("cluster", state, "etcd 初始化失败")
    with pytest.raises(ResourceFailedError) as failure:
        Uk8sClusterProvider(timings).create(cluster_inputs(network))
    message = str(failure.value)
    assert state in message and "etcd 初始化失败" in message
    assert failure.value.resource_id.startswith("uk8s-")
    assert ucloud_env.count("DelUK8SCluster") == 1
    assert ucloud_env.resources("cluster") == {}


def test_cluster_that_never_becomes_ready_times_out_naming_id_and_state(
    ucloud_env: FakeUCloud, network: dict[str, str]
) -> None:
    ucloud_env.next_creation("cluster", None)
    with pytest.raises(WaitTimeoutError) as failure:
        Uk8sClusterProvider(fast_timings(timeout=0.2)).create(cluster_inputs(network))
    cluster_id = next(iter(ucloud_env.resources("cluster")))
    assert cluster_id in str(failure.value)
    assert "last state: INITIALIZING" in str(failure.value)


def test_failed_nodes_are_removed_and_reported(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    cluster = Uk8sClusterProvider(timings).create(cluster_inputs(network))
    ucloud_env.next_creation("node", "Install Fail", "kubelet 安装失败")
    with pytest.raises(ResourceFailedError, match=r"Install Fail.*kubelet"):
        Uk8sNodeProvider(timings).create(node_inputs(cluster.id, network["subnet_id"], count=1))
    remaining = ucloud_env.resources("node")
    assert all(n.life.state == "Deleting" for n in remaining.values())
    assert ucloud_env.count("DelUK8SClusterNodeV2") == 1


def test_retry_policy_delays_double_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=6, base_delay=1.0, max_delay=5.0)
    assert list(policy.delays()) == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_failed_cleanup_is_reported_with_the_original_failure(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    ucloud_env.next_creation("cluster", "CREATEFAILED", "quota exceeded")
    ucloud_env.fail_next("DelUK8SCluster", code=230, message="delete protection is on")
    with pytest.raises(ResourceFailedError) as failure:
        Uk8sClusterProvider(timings).create(cluster_inputs(network))
    assert "quota exceeded" in str(failure.value)
    assert any("delete protection is on" in note for note in failure.value.__notes__)


def test_transient_errors_around_the_nat_gateway_are_retried(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    ucloud_env.throttle_next("AllocateEIP")
    eip = EipProvider(timings).create(eip_inputs())
    ucloud_env.fail_next("DescribeFirewall")
    ucloud_env.http_error_next("CreateNATGW", status=502)
    ucloud_env.fail_next("DescribeNATGW", times=2)
    nat = NatGatewayProvider(timings).create(nat_inputs(network, eip.id))
    assert list(ucloud_env.resources("eip")) == [eip.id]
    assert list(ucloud_env.resources("natgw")) == [nat.id]
    assert ucloud_env.count("AllocateEIP") == 2 and ucloud_env.count("CreateNATGW") == 2
    ucloud_env.fail_next("DeleteNATGW")
    NatGatewayProvider(timings).delete(nat.id, nat.outs)
    assert ucloud_env.resources("natgw") == {}


def test_nat_gateway_with_a_foreign_subnet_fails_with_ucloud_message(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    eip = EipProvider(timings).create(eip_inputs())
    other_vpc = VpcProvider(timings).create(vpc_inputs(name="other", cidr_blocks=["10.1.0.0/16"]))
    foreign = SubnetProvider(timings).create(subnet_inputs(other_vpc.id, cidr_block="10.1.1.0/24"))
    with pytest.raises(Exception, match="is not in VPC"):
        NatGatewayProvider(timings).create(nat_inputs(network, eip.id, subnet_ids=[foreign.id]))
    assert ucloud_env.count("CreateNATGW") == 1


class ThrottledWhileWaiting(EipProvider):
    """Throttles (153) the first two polls of the ready wait, once the EIP exists."""

    def __init__(self, fake: FakeUCloud, timings: Timings) -> None:
        super().__init__(timings)
        self.fake = fake

    def create_once(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str:
        id_ = super().create_once(api, inputs)
        self.fake.throttle_next("DescribeEIP", times=2)
        return id_


def test_throttling_during_a_wait_is_retried_with_backoff(ucloud_env: FakeUCloud) -> None:
    sleeps = SleepLog()
    timings = fast_timings(sleep=sleeps)
    eip = ThrottledWhileWaiting(ucloud_env, timings).create(eip_inputs())
    assert list(ucloud_env.resources("eip")) == [eip.id]
    backoff = [delay for delay in sleeps.delays if delay >= timings.retry.base_delay]
    assert backoff[-2:] == [timings.retry.base_delay, 2 * timings.retry.base_delay]


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (160, "missing parameter (summary/public.md)"),
        (172, "unknown user (summary/public.md)"),
        (292, "unknown project (summary/public.md)"),
        (4018, "balance too low (unet-api/error_code.md)"),
        (4207, "quota (unet-api/error_code.md)"),
    ],
)
def test_documented_permanent_answers_are_not_retried(
    ucloud_env: FakeUCloud, timings: Timings, code: int, meaning: str
) -> None:
    ucloud_env.fail_next("AllocateEIP", code=code, times=10)
    with pytest.raises(Exception, match=f"AllocateEIP - {code}"):
        EipProvider(timings).create(eip_inputs())
    assert ucloud_env.count("AllocateEIP") == 1, meaning


def test_a_service_unavailable_answer_is_retried(ucloud_env: FakeUCloud, timings: Timings) -> None:
    ucloud_env.fail_next("CreateVPC", code=150, times=2)
    VpcProvider(timings).create(vpc_inputs())
    assert ucloud_env.count("CreateVPC") == 3

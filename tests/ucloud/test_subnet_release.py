"""DeleteSubnet answers 4411 while UCloud releases what used the subnet: the delete is sent
again for up to 10 minutes (terraform-provider-ucloud resource_ucloud_subnet.go:193-210).

The clock is a FakeClock that moves only when slept on, so the 10-minute bound is tested
without waiting.
"""

from __future__ import annotations

import pytest

from components.ucloud.base import RELEASE_INTERVAL_S, RELEASE_TIMEOUT_S, Timings
from components.ucloud.eip import EipProvider
from components.ucloud.errors import StillReleasingError
from components.ucloud.nat_gateway import NatGatewayProvider
from components.ucloud.subnet import SubnetProvider
from components.ucloud.waiting import WaitPolicy
from tests.fake_ucloud import FakeUCloud
from tests.ucloud.conftest import FakeClock, eip_inputs, fast_timings, nat_inputs


def ten_minutes(clock: FakeClock) -> Timings:
    """The real release bound and interval, on a fake clock."""
    policy = WaitPolicy(
        timeout=RELEASE_TIMEOUT_S, interval=RELEASE_INTERVAL_S, sleep=clock.sleep, clock=clock
    )
    return fast_timings(release=policy)


def test_the_default_bound_is_terraforms_ten_minutes() -> None:
    assert Timings().release.timeout == 600


def remove_gateway(fake: FakeUCloud, timings: Timings, network: dict[str, str]) -> None:
    """A NAT gateway used the subnet and is deleted: UCloud now "releases" the subnet."""
    eip = EipProvider(timings).create(eip_inputs())
    nat = NatGatewayProvider(timings).create(nat_inputs(network, eip.id))
    NatGatewayProvider(timings).delete(nat.id, nat.outs)


def test_subnet_delete_is_sent_again_while_ucloud_releases_it(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    ucloud_env.cloud.release_tries = 3
    remove_gateway(ucloud_env, timings, network)
    clock = FakeClock()
    subnet = {"region": "cn-bj2", "vpc_id": network["vpc_id"]}
    SubnetProvider(ten_minutes(clock)).delete(network["subnet_id"], subnet)
    assert ucloud_env.resources("subnet") == {}
    assert ucloud_env.count("DeleteSubnet") == 4  # three 4411 answers, then done
    assert clock.delays == [RELEASE_INTERVAL_S] * 3


def test_subnet_delete_gives_up_after_ten_minutes_naming_the_subnet(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    ucloud_env.cloud.release_tries = 10_000
    remove_gateway(ucloud_env, timings, network)
    clock = FakeClock()
    subnet_id = network["subnet_id"]
    with pytest.raises(StillReleasingError) as failure:
        SubnetProvider(ten_minutes(clock)).delete(subnet_id, {"region": "cn-bj2"})
    message = str(failure.value)
    assert subnet_id in message and "600s" in message and "DeleteSubnet - 4411" in message
    tries = ucloud_env.count("DeleteSubnet")
    assert tries == RELEASE_TIMEOUT_S / RELEASE_INTERVAL_S + 1
    assert clock.now <= RELEASE_TIMEOUT_S
    assert subnet_id in ucloud_env.resources("subnet")


def test_4411_is_not_retried_as_a_quick_transient_error(
    ucloud_env: FakeUCloud, network: dict[str, str]
) -> None:
    """The release loop owns 4411: the quick backoff (5 tries) never multiplies it."""
    ucloud_env.fail_next("DeleteSubnet", code=4411, times=2)
    clock = FakeClock()
    SubnetProvider(ten_minutes(clock)).delete(network["subnet_id"], {"region": "cn-bj2"})
    assert ucloud_env.count("DeleteSubnet") == 3
    assert clock.delays == [RELEASE_INTERVAL_S] * 2


def test_transient_errors_between_4411_answers_are_retried_with_backoff(
    ucloud_env: FakeUCloud, network: dict[str, str]
) -> None:
    ucloud_env.fail_next("DeleteSubnet", code=4411)
    ucloud_env.throttle_next("DeleteSubnet")
    clock = FakeClock()
    SubnetProvider(ten_minutes(clock)).delete(network["subnet_id"], {"region": "cn-bj2"})
    assert ucloud_env.count("DeleteSubnet") == 3
    assert ucloud_env.resources("subnet") == {}

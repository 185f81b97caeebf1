"""Describe is retried once, in the base provider, wherever it is used; and nested retries
do not multiply: the node group's lookups inside already-retried blocks make one try each.

The faults are injected only once the resource exists (from create_once, remove or _grow_to),
so they hit the polling describe rather than the crash-safe `find` before the create.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from components.ucloud.api import UCloudApi
from components.ucloud.base import Timings
from components.ucloud.uk8s_cluster import Uk8sClusterProvider
from components.ucloud.uk8s_node import Uk8sNodeProvider
from components.ucloud.vpc import VpcProvider
from tests.fake_ucloud import FakeUCloud
from tests.fake_ucloud.faults import Fault
from tests.ucloud.conftest import cluster_inputs, node_inputs, vpc_inputs

TRANSIENT_FAULTS = 2  # fewer than fast_timings' 5 attempts


class FlakyVpc(VpcProvider):
    """Answers the describes after CreateVPC / DeleteVPC with transient errors."""

    def __init__(self, fake: FakeUCloud, timings: Timings) -> None:
        super().__init__(timings)
        self.fake = fake
        self.fault = Fault("DescribeVPC", times=0)

    def _break_describe(self) -> None:
        self.fault = Fault("DescribeVPC", times=TRANSIENT_FAULTS)
        self.fake.inject(self.fault)

    def create_once(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str:
        id_ = super().create_once(api, inputs)
        self._break_describe()
        return id_

    def remove(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        super().remove(api, id_, props)
        self._break_describe()


class FlakyCluster(Uk8sClusterProvider):
    """Answers the polls after CreateUK8SClusterV2 with a 5000 RetCode and an HTTP 503."""

    def __init__(self, fake: FakeUCloud, timings: Timings) -> None:
        super().__init__(timings)
        self.fake = fake
        self.faults: list[Fault] = []

    def create_once(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str:
        id_ = super().create_once(api, inputs)
        self.faults = [
            Fault("ListUK8SClusterV2", times=1),
            Fault("ListUK8SClusterV2", times=1, http_status=503),
        ]
        for fault in self.faults:
            self.fake.inject(fault)
        return id_


def test_vpc_create_survives_transient_errors_while_polling(
    ucloud_env: FakeUCloud, timings: Timings
) -> None:
    provider = FlakyVpc(ucloud_env, timings)
    created = provider.create(vpc_inputs())
    assert provider.fault.times == 0, "the faults must have hit the polling describe"
    assert list(ucloud_env.resources("vpc")) == [created.id]
    assert created.outs["create_time"] > 0


def test_vpc_delete_survives_transient_errors_while_waiting(
    ucloud_env: FakeUCloud, timings: Timings
) -> None:
    created = VpcProvider(timings).create(vpc_inputs())
    provider = FlakyVpc(ucloud_env, timings)
    provider.delete(created.id, created.outs)
    assert provider.fault.times == 0
    assert ucloud_env.resources("vpc") == {}


def test_vpc_read_survives_a_transient_error(ucloud_env: FakeUCloud, timings: Timings) -> None:
    created = VpcProvider(timings).create(vpc_inputs())
    ucloud_env.fail_next("DescribeVPC", times=TRANSIENT_FAULTS)
    read = VpcProvider(timings).read(created.id, created.outs)
    assert read.id == created.id


def test_cluster_create_survives_transient_errors_while_polling(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    provider = FlakyCluster(ucloud_env, timings)
    created = provider.create(cluster_inputs(network))
    assert [fault.times for fault in provider.faults] == [0, 0]
    assert created.outs["status"] == "RUNNING"
    assert created.outs["kubeconfig"]
    assert list(ucloud_env.resources("cluster")) == [created.id]


def test_cluster_read_survives_a_transient_error(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    created = Uk8sClusterProvider(timings).create(cluster_inputs(network))
    ucloud_env.fail_next("ListUK8SClusterV2", times=TRANSIENT_FAULTS)
    read = Uk8sClusterProvider(timings).read(created.id, created.outs)
    assert read.id == created.id and read.outs["status"] == "RUNNING"


def test_create_describes_once_the_resource_is_ready(
    ucloud_env: FakeUCloud, timings: Timings
) -> None:
    """The ready poll's outputs become create's outputs: no describe after the wait."""
    created = VpcProvider(timings).create(vpc_inputs())
    # One find (by tag) before the create, then one poll: a VPC is Available at once.
    assert ucloud_env.count("DescribeVPC") == 2
    assert created.outs["create_time"] > 0


class NodesBrokenFrom(Uk8sNodeProvider):
    """Makes every node listing fail from `broken_in` on (\"remove\" or \"grow\")."""

    def __init__(self, fake: FakeUCloud, timings: Timings, broken_in: str) -> None:
        super().__init__(timings)
        self.fake, self.broken_in = fake, broken_in
        self.calls_before_break = -1

    def _break(self, where: str) -> None:
        if where == self.broken_in and self.calls_before_break < 0:  # once: remove is retried
            self.calls_before_break = self.fake.count("ListUK8SClusterNodeV2")
            self.fake.fail_next("ListUK8SClusterNodeV2", times=1000)

    def remove(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        self._break("remove")
        super().remove(api, id_, props)

    def _grow_to(self, api: UCloudApi, inputs: Mapping[str, Any]) -> None:
        self._break("grow")
        super()._grow_to(api, inputs)


@pytest.mark.parametrize("broken_in", ["remove", "grow"])
def test_node_lookups_inside_retried_blocks_do_not_multiply_retries(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], broken_in: str
) -> None:
    cluster = Uk8sClusterProvider(timings).create(cluster_inputs(network))
    group = Uk8sNodeProvider(timings).create(node_inputs(cluster.id, network["subnet_id"], count=1))
    provider = NodesBrokenFrom(ucloud_env, timings, broken_in)
    with pytest.raises(Exception, match="ListUK8SClusterNodeV2 - 150"):
        if broken_in == "remove":
            provider.delete(group.id, group.outs)
        else:
            provider.update(group.id, group.outs, {**group.outs, "count": 2})
    listed = ucloud_env.count("ListUK8SClusterNodeV2") - provider.calls_before_break
    assert provider.calls_before_break >= 0 and listed == timings.retry.attempts

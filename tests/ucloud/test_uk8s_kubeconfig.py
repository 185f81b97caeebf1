"""With the external API server on, only the external kubeconfig is handed out: create waits
(bounded) until GetClusterConfig has it, and never falls back to the VPC-internal one."""

from __future__ import annotations

import pytest

from components.ucloud.base import Timings
from components.ucloud.uk8s_cluster import KubeconfigUnavailableError, Uk8sClusterProvider
from components.ucloud.waiting import WaitPolicy
from tests.fake_ucloud import FakeUCloud, uk8s_api
from tests.ucloud.conftest import SleepLog, cluster_inputs


def late_external_kubeconfig(fake: FakeUCloud, empty_answers: int) -> None:
    """The next cluster's GetClusterConfig lacks ExternalKubeConfig this many times."""
    fake.next_creation(uk8s_api.LATE_EXTERNAL_CONFIG, str(empty_answers))


def test_create_waits_for_a_late_external_kubeconfig(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    late_external_kubeconfig(ucloud_env, 3)
    cluster = Uk8sClusterProvider(timings).create(cluster_inputs(network))
    assert ucloud_env.count("GetClusterConfig") == 4
    external = cluster.outs["external_api_server_address"]
    assert f"server: https://{external}" in cluster.outs["kubeconfig"]
    assert cluster.outs["api_server"] not in cluster.outs["kubeconfig"]


def test_no_external_kubeconfig_fails_clearly_instead_of_the_internal_one(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    late_external_kubeconfig(ucloud_env, 10**6)
    sleeps = SleepLog()
    wait = WaitPolicy(timeout=30.0, interval=10.0, sleep=sleeps, clock=lambda: sum(sleeps.delays))
    with pytest.raises(KubeconfigUnavailableError) as failure:
        Uk8sClusterProvider(timings, kubeconfig_wait=wait).create(cluster_inputs(network))
    message = str(failure.value)
    assert "ExternalKubeConfig" in message and "VPC-internal kubeconfig is not used" in message
    assert sleeps.delays == [10.0, 10.0, 10.0]  # polls at 0, 10, 20, 30 s: bounded by the policy
    assert "fake-token" not in message


def test_refresh_keeps_the_external_kubeconfig_while_uk8s_has_none(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    provider = Uk8sClusterProvider(timings)
    cluster = provider.create(cluster_inputs(network))
    ucloud_env.resources("cluster")[cluster.id].fields["EmptyExternalConfigs"] = 1
    read = provider.read(cluster.id, cluster.outs)
    assert read.outs is not None and read.outs["kubeconfig"] == cluster.outs["kubeconfig"]
    assert read.outs["kubeconfig"] != read.outs["internal_kubeconfig"]

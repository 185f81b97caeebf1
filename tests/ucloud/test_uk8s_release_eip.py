"""Deleting a cluster with an external API server also releases that server's EIP."""

from __future__ import annotations

from components.ucloud.base import Timings
from components.ucloud.uk8s_cluster import Uk8sClusterProvider
from tests.fake_ucloud import FakeUCloud
from tests.ucloud.conftest import cluster_inputs


def test_delete_sends_release_eip_with_an_external_api_server(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    provider = Uk8sClusterProvider(timings)
    cluster = provider.create(cluster_inputs(network))
    assert len(ucloud_env.resources("cluster-eip")) == 1
    provider.delete(cluster.id, cluster.outs)
    sent = dict(ucloud_env.calls)["DelUK8SCluster"]
    assert (sent["ReleaseEIP"], sent["ReleaseUDisk"]) == ("true", "true")
    assert ucloud_env.resources("cluster-eip") == {}
    assert ucloud_env.resources("cluster") == {}


def test_delete_without_an_external_api_server_sends_no_release_eip(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    provider = Uk8sClusterProvider(timings)
    cluster = provider.create(cluster_inputs(network, external_api_server=False))
    provider.delete(cluster.id, cluster.outs)
    assert "ReleaseEIP" not in dict(ucloud_env.calls)["DelUK8SCluster"]
    assert ucloud_env.resources("cluster") == {}

"""UK8S cluster and node-group providers through their whole life against the fake API."""

from __future__ import annotations

import base64

from components.ucloud.base import Timings
from components.ucloud.uk8s_cluster import Uk8sClusterProvider
from components.ucloud.uk8s_node import GROUP_LABEL, Uk8sNodeProvider
from tests.fake_ucloud import FakeUCloud
from tests.ucloud.conftest import cluster_inputs, node_inputs


def test_cluster_waits_for_running_and_returns_kubeconfigs(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    provider = Uk8sClusterProvider(timings)
    cluster = provider.create(cluster_inputs(network))

    assert cluster.outs["status"] == "RUNNING"
    assert ucloud_env.count("ListUK8SClusterV2") >= 2  # it polled through INITIALIZING
    sent = dict(ucloud_env.calls)["CreateUK8SClusterV2"]
    assert base64.b64decode(sent["Password"]).decode() == "Secret-Pass1"
    assert [sent[f"Master.{i}.Zone"] for i in range(3)] == ["cn-bj2-02", "cn-bj2-03", "cn-bj2-05"]
    assert sent["ExternalApiServer"] == "Yes"
    external = cluster.outs["external_api_server_address"]
    assert f"server: https://{external}" in cluster.outs["kubeconfig"]
    assert cluster.outs["api_server"] in cluster.outs["internal_kubeconfig"]

    read = provider.read(cluster.id, cluster.outs)
    assert read.outs is not None and read.outs["kubeconfig"] == cluster.outs["kubeconfig"]

    rename = provider.diff(cluster.id, cluster.outs, cluster_inputs(network, name="llm2"))
    assert rename.changes and rename.replaces == []
    updated = provider.update(cluster.id, cluster.outs, cluster_inputs(network, name="llm2"))
    assert updated.outs is not None and updated.outs["name"] == "llm2"
    resized = provider.diff(
        cluster.id, updated.outs, cluster_inputs(network, name="llm2", master_cpu=8)
    )
    assert resized.replaces == ["master_cpu"]

    provider.delete(cluster.id, updated.outs)
    assert ucloud_env.resources("cluster") == {}
    provider.delete(cluster.id, updated.outs)
    assert provider.read(cluster.id, updated.outs).id == ""


def test_internal_kubeconfig_is_used_without_external_api_server(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    cluster = Uk8sClusterProvider(timings).create(
        cluster_inputs(network, external_api_server=False)
    )
    assert cluster.outs["external_api_server_address"] == ""
    assert cluster.outs["kubeconfig"] == cluster.outs["internal_kubeconfig"] != ""


def test_node_group_adds_scales_and_deletes(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    cluster = Uk8sClusterProvider(timings).create(cluster_inputs(network))
    provider = Uk8sNodeProvider(timings)
    inputs = node_inputs(cluster.id, network["subnet_id"])
    group = provider.create(inputs)

    assert group.id == f"{cluster.id}/gpu"
    assert len(group.outs["node_ids"]) == 2 and len(set(group.outs["private_ips"])) == 2
    sent = dict(ucloud_env.calls)["AddUK8SUHostNode"]
    assert (sent["MachineType"], sent["GpuType"], sent["GPU"], sent["Count"]) == (
        "G",
        "4090",
        "1",
        "2",
    )
    assert sent["Labels"] == f"accelerator=nvidia,{GROUP_LABEL}=gpu"
    assert sent["Taints"] == "nvidia.com/gpu=true:NoSchedule"
    nodes = ucloud_env.resources("node")
    assert {n.life.state for n in nodes.values()} == {"Running"}

    grow = {**inputs, "count": 3}
    diff = provider.diff(group.id, group.outs, grow)
    assert diff.changes and diff.replaces == []
    grown = provider.update(group.id, group.outs, grow)
    assert grown.outs is not None and len(grown.outs["node_ids"]) == 3
    assert grown.outs["node_ids"][:2] == group.outs["node_ids"]

    shrunk = provider.update(group.id, grown.outs, {**inputs, "count": 1})
    assert shrunk.outs is not None and shrunk.outs["node_ids"] == group.outs["node_ids"][:1]
    assert len(ucloud_env.resources("node")) == 1

    relabel = provider.diff(group.id, shrunk.outs, {**inputs, "count": 1, "labels": {"a": "b"}})
    assert relabel.replaces == ["labels"]

    provider.delete(group.id, shrunk.outs)
    assert ucloud_env.resources("node") == {}
    assert provider.read(group.id, shrunk.outs).id == ""
    # Deleting again cannot confirm anything: it fails loudly (tests/ucloud/test_uk8s_nodes.py).


def test_refresh_of_an_abnormal_cluster_keeps_the_last_kubeconfig(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    provider = Uk8sClusterProvider(timings)
    cluster = provider.create(cluster_inputs(network))
    record = ucloud_env.resources("cluster")[cluster.id]
    record.life.move("ABNORMAL", "ABNORMAL", 0, "etcd unhealthy")
    read = provider.read(cluster.id, cluster.outs)
    assert read.outs is not None and read.outs["status"] == "ABNORMAL"
    assert read.outs["kubeconfig"] == cluster.outs["kubeconfig"]

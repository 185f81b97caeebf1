"""Stock-outs (NORESOURCE) end the wait at once, name what ran out, and delete what was bought."""

from __future__ import annotations

import pytest

from components.ucloud.base import Timings
from components.ucloud.uk8s_cluster import Uk8sClusterProvider
from components.ucloud.uk8s_node import Uk8sNodeProvider
from components.ucloud.uk8s_stock import StockOutError, is_stock_out
from tests.fake_ucloud import FakeUCloud
from tests.ucloud.conftest import cluster_inputs, node_inputs


@pytest.fixture
def cluster_id(ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]) -> str:
    return str(Uk8sClusterProvider(timings).create(cluster_inputs(network)).id)


def test_nodes_without_stock_fail_fast_naming_gpu_type_and_zone(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    # One node gets hosts, the other never does (the fake keeps it Initializing forever, with
    # NodeLogInfo NORESOURCE): waiting for it would take the whole timeout, billing.
    ucloud_env.next_creation("node", "Running")
    ucloud_env.next_creation("node", None, "NORESOURCE")
    inputs = node_inputs(cluster_id, network["subnet_id"], gpu_type="T4S", zone="cn-bj2-02")
    with pytest.raises(StockOutError) as failure:
        Uk8sNodeProvider(timings).create(inputs)
    message = str(failure.value)
    assert "gpuType T4S" in message and "zone cn-bj2-02" in message and "NORESOURCE" in message
    assert ucloud_env.count("DelUK8SClusterNodeV2") == 2  # both bought nodes
    assert ucloud_env.resources("node") == {}
    assert any("deleted the node(s)" in note for note in failure.value.__notes__)


def test_a_stock_out_while_growing_deletes_only_the_new_nodes(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    provider = Uk8sNodeProvider(timings)
    inputs = node_inputs(cluster_id, network["subnet_id"], count=1)
    group = provider.create(inputs)
    ucloud_env.next_creation("node", None, "NORESOURCE")
    with pytest.raises(StockOutError, match="gpuType 4090"):
        provider.update(group.id, group.outs, {**inputs, "count": 2})
    assert set(ucloud_env.resources("node")) == set(group.outs["node_ids"])


def test_an_add_refused_for_no_resources_is_a_stock_out_and_not_retried(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    # No source gives the RetCode of a refused AddUK8SUHostNode for lack of hosts: the word
    # NORESOURCE in its message is the fallback.
    ucloud_env.fail_next("AddUK8SUHostNode", code=230, message="NORESOURCE")
    with pytest.raises(StockOutError, match=r"gpuType 4090.*zone cn-bj2-05"):
        Uk8sNodeProvider(timings).create(node_inputs(cluster_id, network["subnet_id"]))
    assert ucloud_env.count("AddUK8SUHostNode") == 1


def test_other_refusals_name_what_was_asked_for(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    ucloud_env.fail_next("AddUK8SUHostNode", code=230, message="Params [GPU] 无效")
    with pytest.raises(Exception, match=r"Params \[GPU\]") as failure:
        Uk8sNodeProvider(timings).create(node_inputs(cluster_id, network["subnet_id"]))
    assert not isinstance(failure.value, StockOutError)
    assert any("gpuType 4090" in note and "cn-bj2-05" in note for note in failure.value.__notes__)


def test_masters_without_stock_fail_fast_and_the_cluster_is_removed(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    ucloud_env.next_creation("cluster", None, "NORESOURCE")  # INITIALIZING forever
    with pytest.raises(StockOutError) as failure:
        Uk8sClusterProvider(timings).create(cluster_inputs(network, master_machine_type="O"))
    message = str(failure.value)
    assert "master machine type O" in message and "cn-bj2-02, cn-bj2-03" in message
    assert ucloud_env.count("DelUK8SCluster") == 1 and ucloud_env.resources("cluster") == {}


def test_stock_out_is_read_from_the_log_info_word() -> None:
    assert is_stock_out("NORESOURCE") and is_stock_out("noresource: none left")
    assert not is_stock_out("") and not is_stock_out(None) and not is_stock_out("etcd 异常")

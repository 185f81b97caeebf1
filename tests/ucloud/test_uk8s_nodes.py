"""Node groups are the NodeIds AddUK8SUHostNode returned: waits, deletes and count changes touch
exactly those, a lost answer never buys twice, and delete fails loudly for what it cannot find."""

from __future__ import annotations

from typing import Any

import pytest

from components.ucloud.base import Timings
from components.ucloud.uk8s_cluster import Uk8sClusterProvider
from components.ucloud.uk8s_node import (
    GROUP_LABEL,
    LostPurchaseError,
    NodesNotFoundError,
    Uk8sNodeProvider,
)
from components.ucloud.uk8s_node_set import appeared, group_state
from tests.fake_ucloud import FakeUCloud, uk8s_api
from tests.ucloud.conftest import cluster_inputs, node_inputs

ADD = "AddUK8SUHostNode"


@pytest.fixture
def cluster_id(ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]) -> str:
    return str(Uk8sClusterProvider(timings).create(cluster_inputs(network)).id)


def sent_adds(fake: FakeUCloud) -> list[dict[str, str]]:
    return [params for action, params in fake.calls if action == ADD]


def node_ids_in_fake(fake: FakeUCloud) -> set[str]:
    return set(fake.resources("node"))


def add_by_hand(fake: FakeUCloud, inputs: dict[str, Any], count: int) -> list[str]:
    """Nodes bought outside this provider call (by hand, or by a run that was killed)."""
    request = Uk8sNodeProvider()._add_request(Uk8sNodeProvider().normalize(inputs), count)
    with fake._lock:
        return list(uk8s_api.add_nodes(fake.cloud, {"Region": "cn-bj2", **request})["NodeIds"])


def test_create_waits_for_exactly_the_returned_node_ids(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    # Another group's node in the same cluster that never becomes ready: waiting on "every
    # labelled node" or "every worker" would time out; waiting on our NodeIds does not.
    other = node_inputs(cluster_id, network["subnet_id"], name="other", count=1)
    ucloud_env.next_creation("node", None)
    stuck = set(add_by_hand(ucloud_env, other, 1))

    group = Uk8sNodeProvider(timings).create(node_inputs(cluster_id, network["subnet_id"]))

    assert len(sent_adds(ucloud_env)) == 1
    assert set(group.outs["node_ids"]) == node_ids_in_fake(ucloud_env) - stuck
    assert len(group.outs["node_ids"]) == 2 and group.outs["count"] == 2


def test_a_lost_answer_adopts_the_nodes_it_bought_instead_of_buying_again(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    ucloud_env.fail_next(ADD, after_apply=True, message="connection reset")
    group = Uk8sNodeProvider(timings).create(node_inputs(cluster_id, network["subnet_id"]))
    assert len(sent_adds(ucloud_env)) == 1
    assert set(group.outs["node_ids"]) == node_ids_in_fake(ucloud_env)
    assert len(node_ids_in_fake(ucloud_env)) == 2


def test_a_lost_request_is_not_sent_again_and_fails_naming_the_group(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    # The call failed with a transient error and nothing appeared: it may still have gone
    # through, so sending it again could buy twice.
    ucloud_env.fail_next(ADD, message="connection reset")
    with pytest.raises(LostPurchaseError) as failure:
        Uk8sNodeProvider(timings).create(node_inputs(cluster_id, network["subnet_id"]))
    assert len(sent_adds(ucloud_env)) == 1
    message = str(failure.value)
    assert "gpuType 4090" in message and "cn-bj2-05" in message
    assert f"{GROUP_LABEL}=gpu" in message and "0 of 2 node(s) appeared" in message
    assert node_ids_in_fake(ucloud_env) == set()


def test_a_throttled_add_was_turned_away_so_it_is_sent_again(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    ucloud_env.throttle_next(ADD)
    group = Uk8sNodeProvider(timings).create(node_inputs(cluster_id, network["subnet_id"]))
    assert len(sent_adds(ucloud_env)) == 2
    assert set(group.outs["node_ids"]) == node_ids_in_fake(ucloud_env)
    assert len(node_ids_in_fake(ucloud_env)) == 2


def test_a_rerun_after_a_crash_adopts_the_labelled_nodes(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    inputs = node_inputs(cluster_id, network["subnet_id"])
    left = add_by_hand(ucloud_env, inputs, 2)  # what a killed `pulumi up` bought, unrecorded
    group = Uk8sNodeProvider(timings).create(inputs)
    assert sent_adds(ucloud_env) == []
    assert group.outs["node_ids"] == left


def test_count_changes_add_and_remove_exact_ids(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    provider = Uk8sNodeProvider(timings)
    inputs = node_inputs(cluster_id, network["subnet_id"], count=1)
    group = provider.create(inputs)
    first = group.outs["node_ids"]

    grown = provider.update(group.id, group.outs, {**inputs, "count": 3})
    assert grown.outs is not None
    assert grown.outs["node_ids"][:1] == first and len(grown.outs["node_ids"]) == 3
    assert sent_adds(ucloud_env)[-1]["Count"] == "2"

    newest = grown.outs["node_ids"][1:]
    shrunk = provider.update(group.id, grown.outs, {**inputs, "count": 1})
    assert shrunk.outs is not None and shrunk.outs["node_ids"] == first
    assert node_ids_in_fake(ucloud_env) == set(first)
    deleted = [p["NodeId"] for a, p in ucloud_env.calls if a == "DelUK8SClusterNodeV2"]
    assert sorted(deleted) == sorted(newest)


def test_delete_removes_only_the_owned_ids(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    provider = Uk8sNodeProvider(timings)
    inputs = node_inputs(cluster_id, network["subnet_id"], count=1)
    group = provider.create(inputs)
    stranger = add_by_hand(ucloud_env, inputs, 1)  # same label, never bought by the group
    other = provider.create(node_inputs(cluster_id, network["subnet_id"], name="b", count=1))

    provider.delete(group.id, group.outs)

    assert node_ids_in_fake(ucloud_env) == set(stranger) | set(other.outs["node_ids"])


def test_delete_fails_loudly_for_an_owned_node_it_cannot_find(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    provider = Uk8sNodeProvider(timings)
    group = provider.create(node_inputs(cluster_id, network["subnet_id"]))
    vanished, kept = group.outs["node_ids"]
    with ucloud_env._lock:
        ucloud_env.cloud.kind("node").pop(vanished)

    with pytest.raises(NodesNotFoundError) as failure:
        provider.delete(group.id, group.outs)

    message = str(failure.value)
    assert vanished in message and cluster_id in message and "pulumi refresh" in message
    assert kept not in message and node_ids_in_fake(ucloud_env) == set()  # the other one went


def test_delete_without_node_ids_or_labelled_nodes_fails_loudly(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    provider = Uk8sNodeProvider(timings)
    group = provider.create(node_inputs(cluster_id, network["subnet_id"]))
    legacy: dict[str, Any] = {k: v for k, v in group.outs.items() if k != "node_ids"}
    provider.delete(group.id, legacy)  # the label still finds them
    assert node_ids_in_fake(ucloud_env) == set()
    with pytest.raises(NodesNotFoundError, match="records no node_ids"):
        provider.delete(group.id, legacy)


def test_nodes_of_a_deleted_cluster_are_gone(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    provider = Uk8sNodeProvider(timings)
    group = provider.create(node_inputs(cluster_id, network["subnet_id"]))
    with ucloud_env._lock:
        uk8s_api.delete_cluster(ucloud_env.cloud, {"Region": "cn-bj2", "ClusterId": cluster_id})
        ucloud_env.cloud.poll("cluster")  # DELETING, then gone
    assert cluster_id not in ucloud_env.resources("cluster")

    listed = [p for a, p in ucloud_env.calls if a == "ListUK8SClusterNodeV2"]
    provider.delete(group.id, group.outs)  # 94007, recognised by its code alone
    assert provider.read(group.id, group.outs).id == ""
    assert len([p for a, p in ucloud_env.calls if a == "ListUK8SClusterNodeV2"]) > len(listed)


def test_the_fake_answers_a_deleted_cluster_with_94007_and_no_hint_words(
    ucloud_env: FakeUCloud,
) -> None:
    with pytest.raises(Exception) as failure:
        uk8s_api.list_nodes(ucloud_env.cloud, {"Region": "cn-bj2", "ClusterId": "uk8s-gone"})
    assert getattr(failure.value, "code", None) == 94007
    assert not any(w in failure.value.message.lower() for w in ("not", "found", "exist", "不存在"))


def test_new_nodes_without_our_label_are_adopted_only_when_their_shape_matches() -> None:
    inputs = {"zone": "z1", "name": "gpu", "machine_type": "G", "gpu_type": "4090"}
    inputs |= {"cpu": 16, "mem": 65536}
    shaped = {"Zone": "z1", "MachineType": "G", "GPUType": "4090", "CPU": 16, "Memory": 65536}
    listing = [
        {"NodeId": "old", **shaped},
        {"NodeId": "same-shape", **shaped, "Labels": []},
        {"NodeId": "other-gpu", **shaped, "GPUType": "T4"},
        {"NodeId": "other-zone", **shaped, "Zone": "z2"},
        {"NodeId": "other-group", **shaped, "Labels": [f"{GROUP_LABEL}=b"]},
        {"NodeId": "ours", **shaped, "GPUType": "T4", "Labels": [f"{GROUP_LABEL}=gpu"]},
        {"NodeId": "master", **shaped, "NodeRole": "master"},
    ]
    assert appeared(listing, {"old"}, inputs) == ["same-shape", "ours"]


def test_group_state_needs_every_owned_node_listed_and_ready() -> None:
    ready = {"NodeId": "a", "NodeStatus": "Running", "NodeLogInfo": ""}
    assert group_state([ready], 1).state == "Running"
    assert group_state([ready], 2).state == "Pending"  # one not listed yet
    failed = {"NodeId": "b", "NodeStatus": "Install Fail", "NodeLogInfo": "kubelet"}
    assert group_state([ready, failed], 2).state == "Install Fail"
    short = {"NodeId": "c", "NodeStatus": "Initializing", "NodeLogInfo": "NORESOURCE"}
    assert group_state([ready, short], 2).stock_out

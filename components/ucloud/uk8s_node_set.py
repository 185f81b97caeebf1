"""What a ListUK8SClusterNodeV2 answer says about one node group: pure functions, no API calls.

Why apart from the provider: which nodes are ours, whether they are ready, out of stock or
failed, are the decisions that must be right, and they are easiest to test without a network.
Field names are NodeInfoV2's (ucloud-sdk-python3 0.11.150 services/uk8s/client.py:1720-1765).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.ucloud.uk8s_stock import is_stock_out

GROUP_LABEL = "llm-uk8s.io/node-group"
# NodeStatus enum (SDK client.py:1750): Initializing, Starting, Running, Stopping, Stopped,
# ToBeDeleted, Deleting, Error, "Install Fail". The Terraform provider waits for "Ready" and
# fails on Error, "Install Fail" and Stopped (ucloud/consts.go:88-94,
# resource_ucloud_uk8s_node.go:336-343); the SDK's enum has no "Ready", so both count as ready.
READY_STATES = frozenset({"Running", "Ready"})
FAILED_STATES = frozenset({"Error", "Install Fail", "InstallFail", "Stopped"})
# States in which a delete is already under way (SDK enum; TF waits on ToBeDeleted, :407).
DELETING_STATES = frozenset({"ToBeDeleted", "Deleting"})
PENDING = "Pending"
RUNNING = "Running"
MASTER_ROLE = "master"  # NodeRole enum: master, node (SDK client.py:1749)


def node_id(node: Mapping[str, Any]) -> str:
    return str(node.get("NodeId") or "")


def workers(listing: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The worker nodes of a listing (ListUK8SClusterNodeV2 lists the masters too)."""
    return [dict(n) for n in listing if n.get("NodeRole", "node") != MASTER_ROLE and node_id(n)]


def labels_of(node: Mapping[str, Any]) -> dict[str, str]:
    """NodeInfoV2.Labels is list[str] (SDK); "key=value" items are an assumption no source
    confirms, so a node whose labels read otherwise simply carries no group label."""
    pairs = (str(item).split("=", 1) for item in node.get("Labels") or [])
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def private_ip(node: Mapping[str, Any]) -> str:
    for ip in node.get("IPSet") or []:
        if ip.get("Type") == "Private":  # UHostIPSet.Type: Internation, Bgp, Private (SDK)
            return str(ip.get("IP") or "")
    return ""


def owned(listing: Sequence[Mapping[str, Any]], ids: Iterable[str]) -> list[dict[str, Any]]:
    """The listed nodes among `ids`, in the order of `ids`."""
    by_id = {node_id(n): dict(n) for n in listing}
    return [by_id[i] for i in ids if i in by_id]


def _same_zone(node: Mapping[str, Any], inputs: Mapping[str, Any]) -> bool:
    return not node.get("Zone") or node.get("Zone") == inputs["zone"]


def labelled(listing: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]) -> list[dict]:
    """Nodes carrying this group's label in its zone: what an interrupted create left behind."""
    return [
        dict(n)
        for n in workers(listing)
        if _same_zone(n, inputs)
        and labels_of(n).get(GROUP_LABEL) == inputs["name"]
        and str(n.get("NodeStatus")) not in DELETING_STATES
    ]


def _same_shape(node: Mapping[str, Any], inputs: Mapping[str, Any]) -> bool:
    wanted = {
        "MachineType": inputs.get("machine_type"),
        "GPUType": inputs.get("gpu_type"),
        "CPU": inputs.get("cpu"),
        "Memory": inputs.get("mem"),  # NodeInfoV2.Memory is in MB, like AddUK8SUHostNode's Mem
    }
    for key, value in wanted.items():
        seen = node.get(key)
        if value in (None, "") or seen in (None, ""):
            continue
        if str(seen).lower() != str(value).lower():
            return False
    return True


def appeared(
    listing: Sequence[Mapping[str, Any]], before: set[str], inputs: Mapping[str, Any]
) -> list[str]:
    """Ids of nodes that are new since `before` and could be the ones our lost call bought:
    same zone, and our group label (or no group label at all and the shape we asked for)."""
    found = []
    for node in workers(listing):
        if node_id(node) in before or not _same_zone(node, inputs):
            continue
        group = labels_of(node).get(GROUP_LABEL)
        if group == inputs["name"] or (group is None and _same_shape(node, inputs)):
            found.append(node_id(node))
    return found


@dataclass(frozen=True)
class GroupState:
    """The group as one state: Running only when every owned node is listed and ready."""

    state: str
    detail: str = ""
    stock_out: bool = False


def group_state(nodes: Sequence[Mapping[str, Any]], expected: int) -> GroupState:
    for node in nodes:
        if is_stock_out(node.get("NodeLogInfo")):
            status = str(node.get("NodeStatus") or PENDING)
            return GroupState(status, f"node {node_id(node)}: {node.get('NodeLogInfo')}", True)
    for node in nodes:
        status = str(node.get("NodeStatus") or "")
        if status in FAILED_STATES:
            return GroupState(status, f"node {node_id(node)}: {node.get('NodeLogInfo') or status}")
    if len(nodes) == expected and all(str(n.get("NodeStatus")) in READY_STATES for n in nodes):
        return GroupState(RUNNING)
    unlisted = expected - len(nodes)
    return GroupState(PENDING, f"{unlisted} node(s) not listed yet" if unlisted > 0 else "")


def observed(nodes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The group's outputs as read from its nodes."""
    return {
        "count": len(nodes),
        "node_ids": [node_id(n) for n in nodes],
        "private_ips": [private_ip(n) for n in nodes],
    }


def newest(nodes: Sequence[Mapping[str, Any]], how_many: int) -> list[str]:
    """Ids of the `how_many` most recently created nodes (they go first when shrinking)."""
    ordered = sorted(nodes, key=lambda n: (int(n.get("CreateTime") or 0), node_id(n)))
    return [node_id(n) for n in ordered[len(ordered) - how_many :]] if how_many > 0 else []

"""Fake UK8S actions: clusters and their UHost nodes, with asynchronous states."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from tests.fake_ucloud.cloud import FakeCloud, Handler, Record, page
from tests.fake_ucloud.protocol import NOT_FOUND, ApiError, require

NOT_READY = 8050  # the fake's own choice
BAD_PARAM = 8051


def _password_ok(value: str) -> None:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ApiError(BAD_PARAM, "Password must be base64 encoded") from error


def kubeconfig(server: str, cluster_id: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\nclusters:\n- name: " + cluster_id + "\n  cluster:\n"
        "    server: https://" + server + "\n    certificate-authority-data: ZmFrZQ==\n"
        "users:\n- name: admin\n  user:\n    token: fake-token-" + cluster_id + "\n"
    )


def create_cluster(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(
        p,
        "Region",
        "ClusterName",
        "MasterCPU",
        "MasterMachineType",
        "MasterMem",
        "Password",
        "ServiceCIDR",
        "SubnetId",
        "VPCId",
        "K8sVersion",
    )
    masters = p.get("Master") or []
    if len(masters) != 3 or not all(m.get("Zone") for m in masters):
        raise ApiError(BAD_PARAM, "Master.0.Zone, Master.1.Zone and Master.2.Zone are required")
    _password_ok(p["Password"])
    cloud.get("vpc", p["VPCId"], "VPC")
    subnet = cloud.get("subnet", p["SubnetId"], "Subnet")
    index = len(cloud.kind("cluster")) + 2
    fields = {
        "ClusterName": p["ClusterName"],
        "VPCId": p["VPCId"],
        "SubnetId": subnet.id,
        "ServiceCIDR": p["ServiceCIDR"],
        "K8sVersion": p["K8sVersion"],
        "Region": p["Region"],
        "ApiServer": f"10.0.1.{index}:6443",
        "PodCIDR": "",
        "ExternalApiServer": f"106.75.0.{index}:6443"
        if p.get("ExternalApiServer") == "Yes"
        else "",
        "Zones": [m["Zone"] for m in masters],
    }
    record = cloud.add("cluster", "uk8s", fields, "INITIALIZING", "RUNNING")
    return {"ClusterId": record.id}


def _cluster_view(record: Record) -> dict[str, Any]:
    shown = {k: v for k, v in record.fields.items() if k not in ("Zones", "Region")}
    return {
        **shown,
        "ClusterId": record.id,
        "Status": record.life.state,
        "ClusterLogInfo": record.life.detail,
        "MasterCount": 3,
        "NodeCount": 0,
        "ClusterType": "Dedicated",
    }


def list_clusters(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region")
    items = [
        _cluster_view(r)
        for r in cloud.poll("cluster")
        if r.fields["Region"] == p["Region"] and (not p.get("ClusterId") or r.id == p["ClusterId"])
    ]
    if p.get("ClusterId") and not items:
        raise ApiError(NOT_FOUND, f"cluster [{p['ClusterId']}] not found")
    shown = page(items, p)
    return {"ClusterSet": shown, "ClusterCount": len(shown), "TotalCount": len(items)}


def _running_cluster(cloud: FakeCloud, cluster_id: str) -> Record:
    record = cloud.get("cluster", cluster_id, "cluster")
    if record.life.state != "RUNNING":
        raise ApiError(NOT_READY, f"cluster [{cluster_id}] is {record.life.state}, not RUNNING")
    return record


def get_cluster_config(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "ClusterId")
    record = _running_cluster(cloud, p["ClusterId"])
    external = record.fields["ExternalApiServer"]
    return {
        "KubeConfig": kubeconfig(record.fields["ApiServer"], record.id),
        "ExternalKubeConfig": kubeconfig(external, record.id) if external else "",
        "Updatable": False,
    }


def modify_cluster_name(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "ClusterId", "ClusterName")
    cloud.get("cluster", p["ClusterId"], "cluster").fields["ClusterName"] = p["ClusterName"]
    return {}


def delete_cluster(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "ClusterId")
    record = cloud.get("cluster", p["ClusterId"], "cluster")
    for node in [n for n in cloud.kind("node").values() if n.parent == record.id]:
        cloud.kind("node").pop(node.id)
    cloud.start_delete(record, "DELETING")
    return {}


def add_nodes(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "ClusterId", "CPU", "Mem", "Count", "ChargeType", "Zone")
    cluster = _running_cluster(cloud, p["ClusterId"])
    if p.get("MachineType") == "G" and not (p.get("GpuType") and p.get("GPU")):
        raise ApiError(BAD_PARAM, "GpuType and GPU are required when MachineType is G")
    if p.get("Password"):
        _password_ok(p["Password"])
    labels = [item for item in str(p.get("Labels") or "").split(",") if item]
    ids = []
    for _ in range(int(p["Count"])):
        number = len(cloud.kind("node")) + 20
        fields = {
            "Labels": labels,
            "Zone": p["Zone"],
            "CPU": int(p["CPU"]),
            "Memory": int(p["Mem"]),
            "GPU": int(p.get("GPU") or 0),
            "GPUType": p.get("GpuType") or "",
            "MachineType": p.get("MachineType") or "N",
            "NodeRole": "node",
            "Taints": p.get("Taints") or "",
            "IPSet": [
                {
                    "Type": "Private",
                    "IP": f"10.0.1.{number}",
                    "SubnetId": p.get("SubnetId") or cluster.fields["SubnetId"],
                    "VPCId": cluster.fields["VPCId"],
                }
            ],
        }
        record = cloud.add(
            "node", f"{cluster.id}-n", fields, "Initializing", "Running", parent=cluster.id
        )
        ids.append(record.id)
    return {"NodeIds": ids}


def _node_view(record: Record) -> dict[str, Any]:
    return {
        **record.fields,
        "NodeId": record.id,
        "InstanceId": "uhost-" + record.id[-8:],
        "NodeStatus": record.life.state,
        "NodeLogInfo": record.life.detail,
    }


def _masters(cluster: Record) -> list[dict[str, Any]]:
    return [
        {
            "NodeId": f"{cluster.id}-master-{i}",
            "NodeRole": "master",
            "NodeStatus": "Running",
            "Labels": [],
            "Zone": zone,
            "CreateTime": cluster.fields["CreateTime"],
            "IPSet": [{"Type": "Private", "IP": f"10.0.1.{200 + i}"}],
        }
        for i, zone in enumerate(cluster.fields["Zones"])
    ]


def list_nodes(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "ClusterId")
    cluster = cloud.get("cluster", p["ClusterId"], "cluster")
    nodes = [_node_view(n) for n in cloud.poll("node") if n.parent == cluster.id]
    wanted = [i for i in str(p.get("NodeIds") or "").split(",") if i]
    every = _masters(cluster) + nodes
    shown = [n for n in every if not wanted or n["NodeId"] in wanted]
    return {"NodeSet": shown, "TotalCount": len(shown)}


def delete_node(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "ClusterId", "NodeId")
    cloud.get("cluster", p["ClusterId"], "cluster")
    record = cloud.get("node", p["NodeId"], "node")
    cloud.start_delete(record, "Deleting")
    return {}


HANDLERS: dict[str, Handler] = {
    "CreateUK8SClusterV2": create_cluster,
    "ListUK8SClusterV2": list_clusters,
    "GetClusterConfig": get_cluster_config,
    "ModifyUK8SClusterName": modify_cluster_name,
    "DelUK8SCluster": delete_cluster,
    "AddUK8SUHostNode": add_nodes,
    "ListUK8SClusterNodeV2": list_nodes,
    "DelUK8SClusterNodeV2": delete_node,
}

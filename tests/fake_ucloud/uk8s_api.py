"""Fake UK8S actions: clusters and their UHost nodes, with asynchronous states.

Answers as the sources say (SDK = ucloud-sdk-python3 0.11.150 services/uk8s; TF =
terraform-provider-ucloud; API = UCloudDoc-Team/api uk8s-api): AddUK8SUHostNode returns NodeIds
(SDK, API add_uk8s_uhost_node.md:83); ListUK8SClusterNodeV2 on a deleted cluster answers 94007
(TF service_ucloud_uk8s.go:36) and ListUK8SClusterV2 an empty ClusterSet (TF :20); stock-outs
show as NodeLogInfo / ClusterLogInfo NORESOURCE (SDK client.py:1748, :1810); GetUK8SVersions and
DescribeUK8SImage as their schemas say. Error messages carry no English hint words, so only
code-based handling passes. Codes no source gives are the fake's own, marked so.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from tests.fake_ucloud.cloud import FakeCloud, Handler, Lifecycle, Outcome, Record, page
from tests.fake_ucloud.protocol import ApiError, require

NOT_READY = 8050  # the fake's own choice
BAD_PARAM = 8051  # the fake's own choice
UNKNOWN_ID = 8052  # the fake's own choice: no source gives UK8S's code for an unknown id
CLUSTER_GONE = 94007  # ListUK8SClusterNodeV2 on a deleted cluster (TF service_ucloud_uk8s.go:36)
# Versions the fake offers (its own list; UCloud's examples include 1.28.15 and 1.26.7).
K8S_VERSIONS = ("1.26.7", "1.28.15", "1.30.3", "1.30.14", "1.32.5")
CONTAINERD = "1.7.22"
# Which GPU types take the "-高性价比" images is the fake's own choice: no source maps UHost's
# GpuType values to the 高性价比显卡3/4/5/6 names (UCloudDoc-Team/uk8s gpu-node.md:11).
VALUE_LINE_GPUS = frozenset({"4090", "4090Pro", "4090_48G", "3090", "2080Ti", "2080TiS"})
# Knob kinds for FakeUCloud.next_creation (read here; set by tests).
LATE_EXTERNAL_CONFIG = "uk8s-late-external-kubeconfig"  # target: how many empty answers first
# target: "filtered" (default), "all" (GPUType not applied), "silent" (all, no SupportedGPUTypes)
IMAGE_SET = "uk8s-image-set"


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
    )
    # Optional; the newest when left out (UCloudDoc-Team/uk8s api/createuk8s.md:16).
    offered = offered_versions(cloud)
    version = p.get("K8sVersion") or offered[-1]
    if version not in offered:
        raise ApiError(BAD_PARAM, f"K8sVersion {version} 无效")
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
        "K8sVersion": version,
        "Region": p["Region"],
        "ApiServer": f"10.0.1.{index}:6443",
        "PodCIDR": "",
        "ExternalApiServer": f"106.75.0.{index}:6443"
        if p.get("ExternalApiServer") == "Yes"
        else "",
        "Zones": [m["Zone"] for m in masters],
    }
    external = p.get("ExternalApiServer") == "Yes"
    late = cloud.outcome(LATE_EXTERNAL_CONFIG, "0").target if external else "0"
    fields["EmptyExternalConfigs"] = int(late or 0)
    record = cloud.add("cluster", "uk8s", fields, "INITIALIZING", "RUNNING")
    if external:
        # The external API server's ULB and its EIP (UCloudDoc-Team/uk8s createcluster.md:44).
        life = Lifecycle("used", "used", 0)
        eip = Record(id=cloud.new_id("eip-uk8s"), fields={}, life=life, parent=record.id)
        cloud.kind("cluster-eip")[eip.id] = eip
    return {"ClusterId": record.id}


def _find(cloud: FakeCloud, kind: str, id_: str, label: str) -> Record:
    """A record by id, or the fake's unknown-id error: a code, and no words to match on."""
    record = cloud.kind(kind).get(id_)
    if record is None:
        raise ApiError(UNKNOWN_ID, f"{label} [{id_}] 无效")
    return record


def _cluster_view(record: Record) -> dict[str, Any]:
    hidden = ("Zones", "Region", "EmptyExternalConfigs")
    shown = {k: v for k, v in record.fields.items() if k not in hidden}
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
    # An unknown ClusterId gives an empty ClusterSet: the Terraform provider reads that as gone
    # (service_ucloud_uk8s.go:20-22).
    shown = page(items, p)
    return {"ClusterSet": shown, "ClusterCount": len(shown), "TotalCount": len(items)}


def _running_cluster(cloud: FakeCloud, cluster_id: str) -> Record:
    record = _find(cloud, "cluster", cluster_id, "ClusterId")
    if record.life.state != "RUNNING":
        raise ApiError(NOT_READY, f"cluster [{cluster_id}] is {record.life.state}, not RUNNING")
    return record


def get_cluster_config(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "ClusterId")
    record = _running_cluster(cloud, p["ClusterId"])
    external = record.fields["ExternalApiServer"]
    if record.fields["EmptyExternalConfigs"] > 0:  # a test asked for a late external config
        record.fields["EmptyExternalConfigs"] -= 1
        external = ""
    return {
        "KubeConfig": kubeconfig(record.fields["ApiServer"], record.id),
        "ExternalKubeConfig": kubeconfig(external, record.id) if external else "",
        "Updatable": False,
    }


def modify_cluster_name(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "ClusterId", "ClusterName")
    _find(cloud, "cluster", p["ClusterId"], "ClusterId").fields["ClusterName"] = p["ClusterName"]
    return {}


def delete_cluster(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "ClusterId")
    record = _find(cloud, "cluster", p["ClusterId"], "ClusterId")
    for node in [n for n in cloud.kind("node").values() if n.parent == record.id]:
        cloud.kind("node").pop(node.id)
    # ReleaseEIP is not in the SDK schema or the API docs; ucloud-cli sends it
    # (products/uk8s/internal/uk8s/delete.go:47-60). Without it the fake keeps the EIP, the
    # risk the review names as unconfirmed.
    if p.get("ReleaseEIP") == "true":
        for eip in [e for e in cloud.kind("cluster-eip").values() if e.parent == record.id]:
            cloud.kind("cluster-eip").pop(eip.id)
    cloud.start_delete(record, "DELETING")
    return {}


def add_nodes(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "ClusterId", "CPU", "Mem", "Count", "ChargeType", "Zone")
    cluster = _running_cluster(cloud, p["ClusterId"])
    if p.get("MachineType") == "G" and not (p.get("GpuType") and p.get("GPU")):
        raise ApiError(BAD_PARAM, "GpuType and GPU are required when MachineType is G")
    if p.get("Password"):
        _password_ok(p["Password"])
    if p.get("ImageId") and not _image(str(p["ImageId"])):
        raise ApiError(BAD_PARAM, f"ImageId {p['ImageId']} 无效")
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
            "ImageId": p.get("ImageId") or "",
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
    cluster = cloud.kind("cluster").get(p["ClusterId"])
    if cluster is None:
        raise ApiError(CLUSTER_GONE, f"ClusterId [{p['ClusterId']}] 无效")
    nodes = [_node_view(n) for n in cloud.poll("node") if n.parent == cluster.id]
    wanted = [i for i in str(p.get("NodeIds") or "").split(",") if i]
    every = _masters(cluster) + nodes
    shown = [n for n in every if not wanted or n["NodeId"] in wanted]
    return {"NodeSet": shown, "TotalCount": len(shown)}


def delete_node(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    require(p, "Region", "ClusterId", "NodeId")
    _find(cloud, "cluster", p["ClusterId"], "ClusterId")
    record = _find(cloud, "node", p["NodeId"], "NodeId")
    cloud.start_delete(record, "Deleting")
    return {}


def get_versions(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    # Region, ProjectId and Kind are required; Kind's one value is Dedicated (SDK
    # GetUK8SVersionsRequestSchema; API get_uk8s_versions.md).
    require(p, "Region", "ProjectId", "Kind")
    if p["Kind"] != "Dedicated":
        raise ApiError(BAD_PARAM, f"Kind {p['Kind']} 无效")
    data = [{"K8sVersion": v, "ContainerdVersion": CONTAINERD} for v in offered_versions(cloud)]
    return {"Data": data}


def offered_versions(cloud: FakeCloud) -> tuple[str, ...]:
    """What GetUK8SVersions lists: K8S_VERSIONS unless a test set FakeCloud.k8s_versions."""
    return K8S_VERSIONS if cloud.k8s_versions is None else cloud.k8s_versions


def _images() -> list[dict[str, Any]]:
    """The fake's catalogue, named like UCloudDoc-Team/uk8s gpu-node.md:18-26's table."""
    value = sorted(VALUE_LINE_GPUS)
    other = ["T4", "T4S", "V100S", "P40", "A100", "A800", "H20"]
    images = []
    for number, (os_name, gpus) in enumerate(
        [
            ("Ubuntu 20.04-高性价比", value),
            ("Ubuntu 22.04-高性价比", value),
            ("Ubuntu 24.04-高性价比", value),
            ("Ubuntu 22.04", other),
            ("Ubuntu 24.04", other),
            ("Centos 7.6", other),
        ]
    ):
        images.append(
            {
                "ImageId": f"uimage-gpu{number:02d}",
                "ImageName": os_name,
                "OsName": os_name,
                "OsType": "Linux",
                "NotSupportGPU": False,
                "SupportedGPUTypes": gpus,
                "ZoneId": 1,
            }
        )
    images.append(
        {
            "ImageId": "uimage-cpu00",
            "ImageName": "Ubuntu 22.04",
            "OsName": "Ubuntu 22.04",
            "OsType": "Linux",
            "NotSupportGPU": True,
            "ZoneId": 1,
        }
    )
    return images


def _image(image_id: str) -> dict[str, Any] | None:
    return next((i for i in _images() if i["ImageId"] == image_id), None)


def _supporting(images: list[dict[str, Any]], without: set[str]) -> list[dict[str, Any]]:
    """The catalogue with the GPU types a test took away (FakeCloud.gpu_types_without_node_image)
    left out of every image's SupportedGPUTypes."""
    if not without:
        return images
    return [
        {**i, "SupportedGPUTypes": [g for g in i["SupportedGPUTypes"] if g not in without]}
        if "SupportedGPUTypes" in i
        else i
        for i in images
    ]


def describe_images(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    # GPUType must be given when MachineType is G (SDK DescribeUK8SImage; API
    # describe_uk8s_image.md). How well UCloud filters by it is unconfirmed: the knob IMAGE_SET
    # lets a test get a less helpful answer.
    require(p, "Region")
    machine = p.get("MachineType") or "O"
    if machine == "G" and not p.get("GPUType"):
        raise ApiError(BAD_PARAM, "GPUType 缺失")
    style: Outcome = cloud.outcome(IMAGE_SET, "filtered")
    images = _supporting(_images(), cloud.gpu_types_without_node_image)
    if machine == "G" and style.target == "filtered":
        images = [i for i in images if p["GPUType"] in i.get("SupportedGPUTypes", [])]
    if style.target == "silent":
        images = [{k: v for k, v in i.items() if k != "SupportedGPUTypes"} for i in images]
    return {"ImageSet": images, "PHostImageSet": [], "CustomImageSet": []}


HANDLERS: dict[str, Handler] = {
    "CreateUK8SClusterV2": create_cluster,
    "ListUK8SClusterV2": list_clusters,
    "GetClusterConfig": get_cluster_config,
    "ModifyUK8SClusterName": modify_cluster_name,
    "DelUK8SCluster": delete_cluster,
    "AddUK8SUHostNode": add_nodes,
    "ListUK8SClusterNodeV2": list_nodes,
    "DelUK8SClusterNodeV2": delete_node,
    "GetUK8SVersions": get_versions,
    "DescribeUK8SImage": describe_images,
}

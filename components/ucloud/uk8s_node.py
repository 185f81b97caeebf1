"""A group of UK8S worker nodes (GPU or not), like ucloud_uk8s_node: AddUK8SUHostNode /
ListUK8SClusterNodeV2 / DelUK8SClusterNodeV2.

UCloud has no node-group object for plain UHost nodes, so the group is marked with one
Kubernetes label; that label lets a retried create find the nodes a crashed one added.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, Resource, UpdateResult

from components.ucloud import vocabulary
from components.ucloud.api import UCloudApi
from components.ucloud.base import Live, Timings, UCloudProvider
from components.ucloud.errors import ResourceFailedError, is_not_found
from components.ucloud.resource import MODULE, args_defaults, resource_props, with_secret_outputs
from components.ucloud.retry import RetryPolicy
from components.ucloud.validation import Checker, is_unknown
from components.ucloud.waiting import Observation, WaitPolicy, wait_for_state

GROUP_LABEL = "llm-uk8s.io/node-group"
READY_STATES = frozenset({"Running", "Ready"})
FAILED_STATES = frozenset({"Error", "Install Fail", "InstallFail"})
PENDING = "Pending"
MAX_LABELS = vocabulary.MAX_NODE_LABELS  # five label pairs; the group label takes one.
MAX_TAINTS = vocabulary.MAX_NODE_TAINTS
TAINT_EFFECTS = vocabulary.TAINT_EFFECTS
MACHINE_TYPES = vocabulary.NODE_MACHINE_TYPES
CHARGE_TYPES = vocabulary.NODE_CHARGE_TYPES
BOOT_DISK_TYPES = vocabulary.BOOT_DISK_TYPES
ID_SEPARATOR = "/"
SECRET_OUTPUTS = ["password"]

NODE_TIMINGS = Timings(
    retry=RetryPolicy(),
    ready=WaitPolicy(timeout=1800.0, first_delay=30.0, interval=10.0),
    gone=WaitPolicy(timeout=600.0, first_delay=0.0, interval=10.0),
)


def group_id(cluster_id: str, name: str) -> str:
    return f"{cluster_id}{ID_SEPARATOR}{name}"


def _labels_of(node: Mapping[str, Any]) -> dict[str, str]:
    """NodeInfoV2.Labels is a list of "key=value" strings."""
    pairs = (str(item).split("=", 1) for item in node.get("Labels") or [])
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def _private_ip(node: Mapping[str, Any]) -> str:
    for ip in node.get("IPSet") or []:
        if ip.get("Type") == "Private":
            return str(ip.get("IP") or "")
    return ""


@dataclass
class Uk8sNodeArgs:
    """Inputs of a node group; `name` marks the group, memory is in MB, `password` is a secret."""

    region: pulumi.Input[str]
    cluster_id: pulumi.Input[str]
    name: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    zone: pulumi.Input[str]
    password: pulumi.Input[str]
    project_id: pulumi.Input[str] | None = None
    machine_type: pulumi.Input[str] = "G"
    gpu_type: pulumi.Input[str] | None = None
    gpu: pulumi.Input[int] | None = None
    cpu: pulumi.Input[int] = 8
    mem: pulumi.Input[int] = 32768
    count: pulumi.Input[int] = 1
    charge_type: pulumi.Input[str] = "Dynamic"
    image_id: pulumi.Input[str] | None = None
    labels: pulumi.Input[Mapping[str, pulumi.Input[str]]] = field(default_factory=dict)
    taints: pulumi.Input[Sequence[pulumi.Input[str]]] = field(default_factory=list)
    boot_disk_type: pulumi.Input[str] = "CLOUD_SSD"
    data_disk_size: pulumi.Input[int] | None = None


class Uk8sNodeProvider(UCloudProvider):
    """`count` changes in place (add or delete nodes); anything else replaces the group."""

    kind = "UK8S node group"
    defaults = args_defaults(Uk8sNodeArgs)
    updatable = frozenset({"count"})
    integer_fields = frozenset({"gpu", "cpu", "mem", "count", "data_disk_size"})
    default_timings = NODE_TIMINGS
    ready_states = READY_STATES
    failed_states = FAILED_STATES

    # ---- check -----------------------------------------------------------------
    def validate(self, checker: Checker, olds: Mapping[str, Any]) -> None:
        inputs = checker.inputs
        checker.region()
        for name in ("cluster_id", "subnet_id", "zone"):
            checker.text(name)
        checker.zone("zone", inputs.get("zone"))
        checker.text("name", max_len=40)
        checker.text("image_id", required=False)
        checker.password("password")
        checker.choice("machine_type", MACHINE_TYPES)
        checker.choice("charge_type", CHARGE_TYPES)
        machine = inputs.get("machine_type")
        if machine in MACHINE_TYPES:
            # O-family hosts boot only from RSSD (vocabulary.boot_disk_types_for).
            checker.choice("boot_disk_type", vocabulary.boot_disk_types_for(machine))
        checker.in_range("cpu", vocabulary.NODE_CPU)
        checker.in_range("mem", vocabulary.NODE_MEMORY_MB)
        checker.in_range("count", vocabulary.NODE_COUNT)
        checker.in_range("data_disk_size", vocabulary.DATA_DISK_GB, required=False)
        if machine == vocabulary.GPU_MACHINE_TYPE:
            self._validate_gpu(checker)
        elif inputs.get("gpu_type") not in (None, ""):
            checker.fail("gpu_type", inputs.get("gpu_type"), "none unless machine_type is G")
        checker.labels("labels", MAX_LABELS - 1)  # GROUP_LABEL is set for you
        checker.taints("taints")

    def _validate_gpu(self, checker: Checker) -> None:
        """A GpuType of UHost's enum, a card count, and a zone that sells that type."""
        inputs = checker.inputs
        checker.choice("gpu_type", vocabulary.GPU_TYPES)
        checker.int_choice("gpu", vocabulary.GPUS_PER_NODE)
        gpu_type, zone = inputs.get("gpu_type"), inputs.get("zone")
        sold_in = vocabulary.gpu_zones(str(gpu_type))
        if gpu_type not in vocabulary.GPU_TYPES or sold_in is None or is_unknown(zone):
            return  # an unknown type is reported above; undocumented zones are accepted
        if not sold_in:
            checker.fail("gpu_type", gpu_type, "a GPU type UCloud still sells (this one retired)")
        elif zone not in sold_in:
            checker.fail("zone", zone, f"a zone that sells {gpu_type}: " + ", ".join(sold_in))

    # ---- reading ---------------------------------------------------------------
    def _group_nodes(self, api: UCloudApi, id_: str) -> list[dict[str, Any]]:
        """The group's workers, oldest first, in one try: for blocks that are retried already."""
        cluster_id, name = id_.split(ID_SEPARATOR, 1)
        try:
            response = api.call_once("uk8s", "list_uk8s_cluster_node_v2", {"ClusterId": cluster_id})
        except Exception as error:
            if is_not_found(error):
                return []  # the cluster is gone, and its nodes with it
            raise
        nodes = [
            node
            for node in response.get("NodeSet") or []
            if node.get("NodeRole", "node") != "master"
            and _labels_of(node).get(GROUP_LABEL) == name
        ]
        return sorted(nodes, key=lambda node: (int(node.get("CreateTime") or 0), node["NodeId"]))

    def group(self, api: UCloudApi, id_: str) -> list[dict[str, Any]]:
        """`_group_nodes` retried, for calls outside any other retry (nesting multiplies tries)."""
        return api.retry.run(lambda: self._group_nodes(api, id_))

    def describe(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> Live | None:
        nodes = self._group_nodes(api, id_)
        if not nodes:
            return None
        states = [str(node.get("NodeStatus") or "") for node in nodes]
        failed = [(s, n) for s, n in zip(states, nodes, strict=True) if s in FAILED_STATES]
        if failed:
            state, node = failed[0]
            detail = f"node {node['NodeId']}: {node.get('NodeLogInfo') or state}"
        else:
            state = "Running" if all(s in READY_STATES for s in states) else PENDING
            detail = ""
        return Live(
            state,
            {
                "count": len(nodes),
                "node_ids": [str(node["NodeId"]) for node in nodes],
                "private_ips": [_private_ip(node) for node in nodes],
            },
            detail,
        )

    # ---- writing ---------------------------------------------------------------
    def _add_request(self, inputs: Mapping[str, Any], count: int) -> dict[str, Any]:
        labels = {**dict(inputs.get("labels") or {}), GROUP_LABEL: inputs["name"]}
        request: dict[str, Any] = {
            "ClusterId": inputs["cluster_id"],
            "SubnetId": inputs["subnet_id"],
            "Zone": inputs["zone"],
            "MachineType": inputs["machine_type"],
            "CPU": inputs["cpu"],
            "Mem": inputs["mem"],
            "Count": count,
            "ChargeType": inputs["charge_type"],
            "Password": base64.b64encode(str(inputs["password"]).encode()).decode(),
            # SDK AddUK8SUHostNode "BootDiskType"; O-family hosts need CLOUD_RSSD.
            "BootDiskType": inputs["boot_disk_type"]
            or vocabulary.boot_disk_type_for(inputs["machine_type"]),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            "NamePrefix": inputs["name"],
        }
        optional = {
            "GpuType": inputs.get("gpu_type"),
            "GPU": inputs.get("gpu"),
            "ImageId": inputs.get("image_id"),
            "DataDiskSize": inputs.get("data_disk_size"),
            "Taints": ",".join(inputs.get("taints") or []) or None,
        }
        request.update({k: v for k, v in optional.items() if v is not None})
        return request

    def _grow_to(self, api: UCloudApi, inputs: Mapping[str, Any]) -> None:
        """Add nodes until the group has `count`; re-counting first makes a retry safe."""
        id_ = group_id(inputs["cluster_id"], inputs["name"])

        def attempt() -> None:
            missing = int(inputs["count"]) - len(self._group_nodes(api, id_))
            if missing > 0:
                api.call_once("uk8s", "add_uk8s_uhost_node", self._add_request(inputs, missing))

        api.retry.run(attempt)

    def _delete_node(self, api: UCloudApi, cluster_id: str, node_id: str) -> None:
        """One try at deleting a node; a node that is already gone counts as deleted."""
        try:
            api.call_once(
                "uk8s",
                "del_uk8s_cluster_node_v2",
                {"ClusterId": cluster_id, "NodeId": node_id, "ReleaseDataUDisk": True},
            )
        except Exception as error:
            if not is_not_found(error):
                raise

    def _delete_nodes(self, api: UCloudApi, cluster_id: str, node_ids: Sequence[str]) -> None:
        for node_id in node_ids:
            api.retry.run(lambda node_id=node_id: self._delete_node(api, cluster_id, node_id))

    def _wait_nodes_gone(self, api: UCloudApi, id_: str, node_ids: Sequence[str]) -> None:
        doomed = set(node_ids)

        def poll() -> Observation:
            left = [n for n in self.group(api, id_) if n["NodeId"] in doomed]
            return Observation("gone" if not left else str(left[0].get("NodeStatus")))

        wait_for_state(self.timings.gone, self.kind, id_, poll, ready={"gone"})

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = self.normalize(props)
        api = self.api(inputs)
        id_ = group_id(inputs["cluster_id"], inputs["name"])
        before = {node["NodeId"] for node in self.group(api, id_)}
        self._grow_to(api, inputs)
        try:
            ready = self.wait_ready(api, id_, inputs)
        except ResourceFailedError:
            added = [n["NodeId"] for n in self.group(api, id_) if n["NodeId"] not in before]
            self._delete_nodes(api, inputs["cluster_id"], added)
            raise
        return CreateResult(id_, self.outputs_from(api, id_, inputs, ready.outputs))

    def update(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> UpdateResult:
        inputs = self.normalize(_news)
        api = self.api(inputs)
        nodes = self.group(api, _id)
        surplus = len(nodes) - int(inputs["count"])
        if surplus > 0:
            newest = [str(node["NodeId"]) for node in nodes[-surplus:]]
            self._delete_nodes(api, inputs["cluster_id"], newest)
            self._wait_nodes_gone(api, _id, newest)
        else:
            self._grow_to(api, inputs)
            self.wait_ready(api, _id, inputs)
        return UpdateResult(self.outputs_now(api, _id, inputs))

    def remove(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        # UCloudProvider.delete retries this whole call: one try per list and per node here.
        cluster_id = id_.split(ID_SEPARATOR, 1)[0]
        for node in self._group_nodes(api, id_):
            self._delete_node(api, cluster_id, str(node["NodeId"]))


class Uk8sNode(Resource, module=MODULE, name="Uk8sNode"):
    """Worker nodes of a UK8S cluster; id is "<cluster id>/<name>"."""

    region: pulumi.Output[str]
    cluster_id: pulumi.Output[str]
    name: pulumi.Output[str]
    count: pulumi.Output[int]
    labels: pulumi.Output[dict[str, str]]
    taints: pulumi.Output[list[str]]
    node_ids: pulumi.Output[list[str]]
    private_ips: pulumi.Output[list[str]]

    def __init__(
        self,
        resource_name: str,
        args: Uk8sNodeArgs,
        opts: pulumi.ResourceOptions | None = None,
        timings: Timings | None = None,
    ) -> None:
        props = resource_props(args, computed=["node_ids", "private_ips"], secrets=["password"])
        opts = with_secret_outputs(opts, SECRET_OUTPUTS)
        super().__init__(Uk8sNodeProvider(timings), resource_name, props, opts)

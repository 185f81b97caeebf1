"""A group of UK8S worker nodes (GPU or not), like ucloud_uk8s_node: AddUK8SUHostNode /
ListUK8SClusterNodeV2 / DelUK8SClusterNodeV2.

The group is the NodeIds AddUK8SUHostNode returned (SDK AddUK8SUHostNodeResponseSchema.NodeIds;
the Terraform provider keeps `resp.NodeIds[0]`, resource_ucloud_uk8s_node.go:322): create waits
for exactly those, update and delete touch exactly those. A Pulumi dynamic provider cannot save
state halfway through a create, so two weaker marks cover the gaps: nodes carry one Kubernetes
label (a re-run after a crash adopts them) and, when an AddUK8SUHostNode answer is lost, the
nodes that appeared since the call are adopted instead of buying again.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, Resource, UpdateResult

from components.ucloud import uk8s_node_set as node_set
from components.ucloud import vocabulary
from components.ucloud.api import UCloudApi
from components.ucloud.base import Live, Timings, UCloudProvider
from components.ucloud.errors import UCloudProviderError, is_not_found, is_throttled, is_transient
from components.ucloud.resource import MODULE, args_defaults, resource_props, with_secret_outputs
from components.ucloud.retry import RetryPolicy
from components.ucloud.uk8s_images import GPU_MACHINE_TYPE, gpu_node_image
from components.ucloud.uk8s_node_set import FAILED_STATES, GROUP_LABEL, READY_STATES, RUNNING
from components.ucloud.uk8s_stock import StockOutError, is_stock_out
from components.ucloud.validation import Checker, is_unknown
from components.ucloud.waiting import Observation, WaitPolicy, wait_for_state

MAX_LABELS = vocabulary.MAX_NODE_LABELS  # five label pairs; the group label takes one.
MACHINE_TYPES = vocabulary.NODE_MACHINE_TYPES
CHARGE_TYPES = vocabulary.NODE_CHARGE_TYPES
ID_SEPARATOR = "/"
CLUSTER_GONE = "<cluster gone>"
SECRET_OUTPUTS = ["password"]

NODE_TIMINGS = Timings(
    retry=RetryPolicy(),
    ready=WaitPolicy(timeout=1800.0, first_delay=30.0, interval=10.0),
    gone=WaitPolicy(timeout=600.0, first_delay=0.0, interval=10.0),
)


def group_id(cluster_id: str, name: str) -> str:
    return f"{cluster_id}{ID_SEPARATOR}{name}"


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
    def _workers(self, api: UCloudApi, cluster_id: str) -> list[dict[str, Any]] | None:
        """The cluster's workers in one try (for blocks that are retried already); None once
        the cluster is gone: ListUK8SClusterNodeV2 answers 94007 then (Terraform provider
        service_ucloud_uk8s.go:36, recognised by code in errors.NOT_FOUND_RET_CODES)."""
        cluster_id = str(cluster_id)
        try:
            response = api.call_once("uk8s", "list_uk8s_cluster_node_v2", {"ClusterId": cluster_id})
        except Exception as error:
            if is_not_found(error):
                return None
            raise
        return node_set.workers(response.get("NodeSet") or [])

    def workers(self, api: UCloudApi, cluster_id: str) -> list[dict[str, Any]] | None:
        """`_workers` retried, for calls outside any other retry (nesting multiplies tries)."""
        return api.retry.run(lambda: self._workers(api, cluster_id))

    @staticmethod
    def _owned_ids(props: Mapping[str, Any]) -> list[str] | None:
        """The NodeIds the group owns, from its outputs; None for a state without them."""
        ids = props.get("node_ids")
        return None if ids is None else [str(i) for i in ids]

    def _mine(
        self, listing: list[dict[str, Any]], props: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        ids = self._owned_ids(props)
        # A state written before node_ids were tracked: fall back to the group label.
        return node_set.labelled(listing, props) if ids is None else node_set.owned(listing, ids)

    def describe(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> Live | None:
        listing = self._workers(api, id_.split(ID_SEPARATOR, 1)[0])
        mine = self._mine(listing or [], props)
        if not mine:
            return None
        summary = node_set.group_state(mine, len(mine))
        return Live(summary.state, node_set.observed(mine), summary.detail)

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

    def _wanted(self, inputs: Mapping[str, Any]) -> str:
        """What a group asks UCloud for, in the words of the stack config, for error messages."""
        shape = f"{inputs['machine_type']} hosts with {inputs['cpu']} CPU / {inputs['mem']} MB"
        if inputs.get("machine_type") == GPU_MACHINE_TYPE:
            shape = f"gpuType {inputs.get('gpu_type')} x{inputs.get('gpu')} ({shape})"
        return f"{shape} in zone {inputs['zone']}"

    def _node_image(
        self, api: UCloudApi, inputs: Mapping[str, Any], olds: Mapping[str, Any]
    ) -> str:
        """The image to buy with: image_id when set, else the one chosen before, else for GPU
        groups the one DescribeUK8SImage offers for the GPU type (see uk8s_images)."""
        if inputs.get("image_id"):
            return str(inputs["image_id"])
        if olds.get("node_image_id"):
            return str(olds["node_image_id"])
        if inputs.get("machine_type") == GPU_MACHINE_TYPE and inputs.get("gpu_type"):
            return gpu_node_image(api, str(inputs["gpu_type"]), str(inputs["zone"]))
        return ""  # UK8S picks one ("不填时后台程序会自动选用一个可用的镜像", SDK)

    def _refused(self, inputs: Mapping[str, Any], error: Exception) -> Exception:
        """A failed AddUK8SUHostNode, named by what was asked for; NORESOURCE in the message
        (no source gives a stock-out RetCode for this call) becomes a StockOutError."""
        message = str(getattr(error, "message", "") or error)
        group = group_id(inputs["cluster_id"], inputs["name"])
        if is_stock_out(message):
            stock_out = StockOutError(
                self.kind, group, "refused by AddUK8SUHostNode", message, self._wanted(inputs)
            )
            return stock_out
        error.add_note(f"AddUK8SUHostNode for {group}: {self._wanted(inputs)}")
        return error

    def _buy(
        self, api: UCloudApi, inputs: Mapping[str, Any], count: int, before: set[str]
    ) -> list[str]:
        """One purchase of `count` nodes: the NodeIds UCloud returned, or after a lost answer
        the nodes that appeared since `before`; never a second AddUK8SUHostNode after a call
        that may have gone through."""
        request = self._add_request(inputs, count)
        delays = api.retry.delays()
        while True:
            try:
                response = api.call_once("uk8s", "add_uk8s_uhost_node", request)
            except Exception as error:
                delay = next(delays, None) if is_transient(error) else None
                if delay is None:
                    refusal = self._refused(inputs, error)
                    if refusal is error:
                        raise
                    raise refusal from error
                api.retry.sleep(delay)
                if is_throttled(error):
                    continue  # turned away before it ran (RetCode 153 / HTTP 429): send again
                return self._adopt(api, inputs, count, before, delays, error)
            ids = [str(i) for i in response.get("NodeIds") or []]
            if ids:
                return ids
            lost = UCloudProviderError("AddUK8SUHostNode answered without NodeIds")
            return self._adopt(api, inputs, count, before, delays, lost)

    def _adopt(
        self,
        api: UCloudApi,
        inputs: Mapping[str, Any],
        count: int,
        before: set[str],
        delays: Iterator[float],
        error: Exception,
    ) -> list[str]:
        """After an AddUK8SUHostNode whose answer was lost: poll (on the retry policy's delays)
        for the nodes it bought, or fail, naming what did appear, without buying again."""
        seen: list[str] = []
        while True:
            try:
                listing = self._workers(api, inputs["cluster_id"]) or []
                seen = node_set.appeared(listing, before, inputs)
            except Exception as list_error:
                if not is_transient(list_error):
                    raise
            if len(seen) >= count:
                return seen
            delay = next(delays, None)
            if delay is None:
                break
            api.retry.sleep(delay)
        group = group_id(inputs["cluster_id"], inputs["name"])
        failure = LostPurchaseError(
            f"{self.kind} {group}: AddUK8SUHostNode for {self._wanted(inputs)} failed on the "
            f"way back ({error}); {len(seen)} of {count} node(s) appeared "
            f"({', '.join(seen) or 'none'}). Not sending it again, which could buy them twice. "
            "Check the cluster's nodes "
            f"labelled {GROUP_LABEL}={inputs['name']} before running `pulumi up` again.",
            seen,
        )
        failure.__cause__ = error
        raise failure

    def _grow_to(self, api: UCloudApi, inputs: Mapping[str, Any]) -> list[str]:
        """Bring the group to `count` nodes; `inputs["node_ids"]` are those it has already.

        Returns the ids added now: nodes an interrupted earlier run left (found by the group
        label) first, then those bought. On failure the ids added so far ride on the
        exception (`added_node_ids`), so the caller can delete them instead of orphaning them.
        """
        owned = self._owned_ids(inputs) or []
        listing = self.workers(api, inputs["cluster_id"])
        if listing is None:
            raise UCloudProviderError(f"cluster {inputs['cluster_id']} no longer exists")
        added = [
            node_set.node_id(n)
            for n in node_set.labelled(listing, inputs)
            if node_set.node_id(n) not in owned
        ]
        missing = int(inputs["count"]) - len(owned) - len(added)
        if missing <= 0:
            return added
        try:
            added += self._buy(api, inputs, missing, {node_set.node_id(n) for n in listing})
        except LostPurchaseError as error:
            error.added_node_ids = [*added, *error.node_ids]
            raise
        except Exception as error:
            error.added_node_ids = added  # type: ignore[attr-defined]
            raise
        return added

    def _wait_for(
        self, api: UCloudApi, id_: str, inputs: Mapping[str, Any], ids: list[str]
    ) -> Observation:
        """Poll until exactly `ids` are listed and ready; fail at once on NORESOURCE."""
        cluster_id = id_.split(ID_SEPARATOR, 1)[0]

        def poll() -> Observation:
            listing = self.workers(api, cluster_id)
            if listing is None:
                return Observation(CLUSTER_GONE, f"cluster {cluster_id} no longer exists")
            mine = node_set.owned(listing, ids)
            summary = node_set.group_state(mine, len(ids))
            if summary.stock_out:
                raise StockOutError(
                    self.kind, id_, summary.state, summary.detail, self._wanted(inputs)
                )
            return Observation(summary.state, summary.detail, node_set.observed(mine))

        return wait_for_state(
            self.timings.ready,
            self.kind,
            id_,
            poll,
            ready={RUNNING},
            failed=FAILED_STATES | {CLUSTER_GONE},
        )

    # ---- removing --------------------------------------------------------------
    def _delete_node(self, api: UCloudApi, cluster_id: str, node_id: str) -> None:
        """One try at deleting a node; one UCloud no longer knows is checked by the listing."""
        try:
            api.call_once(
                "uk8s",
                "del_uk8s_cluster_node_v2",
                {"ClusterId": cluster_id, "NodeId": node_id, "ReleaseDataUDisk": True},
            )
        except Exception as error:
            if not is_not_found(error):
                raise

    def _remove_ids(self, api: UCloudApi, cluster_id: str, ids: Sequence[str]) -> None:
        """One try: delete those of `ids` still listed and not already being deleted."""
        listing = self._workers(api, cluster_id)
        for node in node_set.owned(listing or [], ids):
            if str(node.get("NodeStatus")) not in node_set.DELETING_STATES:
                self._delete_node(api, cluster_id, node_set.node_id(node))

    def _wait_gone(self, api: UCloudApi, id_: str, ids: Sequence[str]) -> None:
        """Until none of `ids` is listed (or the cluster itself is gone)."""
        cluster_id = id_.split(ID_SEPARATOR, 1)[0]

        def poll() -> Observation:
            listing = self.workers(api, cluster_id)
            left = node_set.owned(listing or [], ids)
            return Observation("gone" if not left else str(left[0].get("NodeStatus")))

        wait_for_state(self.timings.gone, self.kind, id_, poll, ready={"gone"})

    def _discard(self, api: UCloudApi, id_: str, ids: Sequence[str], failure: Exception) -> None:
        """Delete what a failed create or grow bought, so no host keeps billing unseen."""
        if not ids:
            return
        cluster_id = id_.split(ID_SEPARATOR, 1)[0]
        try:
            api.retry.run(lambda: self._remove_ids(api, cluster_id, ids))
            self._wait_gone(api, id_, ids)
            failure.add_note(f"deleted the node(s) it had bought: {', '.join(ids)}")
        except Exception as cleanup_error:
            failure.add_note(
                f"and deleting the node(s) it had bought ({', '.join(ids)}) in cluster "
                f"{cluster_id} failed too: {cleanup_error}; delete them in the console"
            )

    def remove(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        # One try per listing and per node: `delete` retries this whole call.
        cluster_id = id_.split(ID_SEPARATOR, 1)[0]
        ids = self._owned_ids(props)
        if ids is None:
            ids = [
                node_set.node_id(n) for n in self._mine(self._workers(api, cluster_id) or [], props)
            ]
        self._remove_ids(api, cluster_id, ids)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Delete exactly the owned nodes; fail loudly for any we cannot find, unless the whole
        cluster is gone (94007), since returning as if done could leave hosts billing."""
        api = self.api(props)
        cluster_id = id_.split(ID_SEPARATOR, 1)[0]
        listing = self.workers(api, cluster_id)
        if listing is None:
            return  # the cluster is gone, and its nodes with it
        ids = self._owned_ids(props)
        if ids is None:
            ids = [node_set.node_id(n) for n in node_set.labelled(listing, props)]
            if not ids:
                raise NodesNotFoundError(
                    f"{self.kind} {id_}: its state records no node_ids and no node of cluster "
                    f"{cluster_id} carries {GROUP_LABEL}={props.get('name')}, so which nodes to "
                    "delete is unknown. Check the cluster's nodes; if none are left, remove the "
                    "resource with `pulumi state delete`."
                )
            props = {**props, "node_ids": ids}
        listed = {node_set.node_id(n) for n in listing}
        missing = [i for i in ids if i not in listed]
        api.retry.run(lambda: self.remove(api, id_, props))
        self._wait_gone(api, id_, ids)
        if missing:
            raise NodesNotFoundError(
                f"{self.kind} {id_}: node(s) {', '.join(missing)} of cluster {cluster_id} are not "
                "listed by ListUK8SClusterNodeV2, so their deletion cannot be confirmed (the "
                "others were deleted). If they were removed outside Pulumi, run `pulumi refresh` "
                "and then delete again."
            )

    # ---- Pulumi's create and update ------------------------------------------------
    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = {**self.normalize(props), "node_ids": []}
        api = self.api(inputs)
        id_ = group_id(inputs["cluster_id"], inputs["name"])
        image = self._node_image(api, inputs, {})
        bought: list[str] = []
        try:
            bought = self._grow_to(api, {**inputs, "image_id": image or None})
            ready = self._wait_for(api, id_, inputs, bought)
        except Exception as failure:
            self._discard(api, id_, bought or getattr(failure, "added_node_ids", []), failure)
            raise
        del inputs["node_ids"]
        observed = {**ready.outputs, "node_image_id": image}
        return CreateResult(id_, self.outputs_from(api, id_, inputs, observed))

    def update(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> UpdateResult:
        inputs = self.normalize(_news)
        inputs.pop("node_ids", None)
        api = self.api(inputs)
        listing = self.workers(api, inputs["cluster_id"]) or []
        mine = self._mine(listing, _olds)
        owned = [node_set.node_id(n) for n in mine]
        surplus = len(owned) - int(inputs["count"])
        image = str(_olds.get("node_image_id") or "")
        if surplus > 0:
            doomed = node_set.newest(mine, surplus)
            api.retry.run(lambda: self._remove_ids(api, inputs["cluster_id"], doomed))
            self._wait_gone(api, _id, doomed)
            kept = node_set.owned(listing, [i for i in owned if i not in doomed])
            observed = node_set.observed(kept)
        else:
            image = self._node_image(api, inputs, _olds)
            added: list[str] = []
            try:
                added = self._grow_to(api, {**inputs, "node_ids": owned, "image_id": image or None})
                observed = dict(self._wait_for(api, _id, inputs, owned + added).outputs)
            except Exception as failure:
                self._discard(api, _id, added or getattr(failure, "added_node_ids", []), failure)
                raise
        observed["node_image_id"] = image
        return UpdateResult(self.outputs_from(api, _id, inputs, observed))


class LostPurchaseError(UCloudProviderError):
    """AddUK8SUHostNode may have bought nodes, but its answer never arrived."""

    def __init__(self, message: str, node_ids: list[str]) -> None:
        super().__init__(message)
        self.node_ids = node_ids
        self.added_node_ids = node_ids


class NodesNotFoundError(UCloudProviderError):
    """Delete could not find nodes the group owns, so it cannot say they are gone."""


class Uk8sNode(Resource, module=MODULE, name="Uk8sNode"):
    """Worker nodes of a UK8S cluster; id is "<cluster id>/<name>", `node_ids` the NodeIds."""

    region: pulumi.Output[str]
    cluster_id: pulumi.Output[str]
    name: pulumi.Output[str]
    count: pulumi.Output[int]
    labels: pulumi.Output[dict[str, str]]
    taints: pulumi.Output[list[str]]
    node_ids: pulumi.Output[list[str]]
    private_ips: pulumi.Output[list[str]]
    node_image_id: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        args: Uk8sNodeArgs,
        opts: pulumi.ResourceOptions | None = None,
        timings: Timings | None = None,
    ) -> None:
        props = resource_props(
            args, computed=["node_ids", "private_ips", "node_image_id"], secrets=["password"]
        )
        opts = with_secret_outputs(opts, SECRET_OUTPUTS)
        super().__init__(Uk8sNodeProvider(timings), resource_name, props, opts)

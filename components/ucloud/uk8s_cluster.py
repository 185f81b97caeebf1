"""ucloud_uk8s_cluster as a Pulumi dynamic resource: CreateUK8SClusterV2 / ListUK8SClusterV2 /
GetClusterConfig / ModifyUK8SClusterName / DelUK8SCluster, with GetUK8SVersions to pick the
version to send."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from components.ucloud import vocabulary
from components.ucloud.api import UCloudApi
from components.ucloud.base import Live, Timings, UCloudProvider
from components.ucloud.errors import ResourceFailedError, UCloudProviderError, WaitTimeoutError
from components.ucloud.resource import MODULE, args_defaults, resource_props, with_secret_outputs
from components.ucloud.retry import RetryPolicy
from components.ucloud.uk8s_stock import StockOutError, is_stock_out
from components.ucloud.uk8s_versions import resolve_version
from components.ucloud.validation import CHARGE_TYPES, Checker, is_unknown
from components.ucloud.waiting import Observation, WaitPolicy, wait_for_state

RUNNING = "RUNNING"
# States from the SDK's ListUK8SClusterV2 docs; the Terraform provider fails on the same four.
FAILED_STATES = frozenset({"CREATEFAILED", "ERROR", "ABNORMAL", "DELETEFAILED"})
GONE_OR_GOING = frozenset({"DELETING", "DELETED", "DELETEFAILED"})
MASTER_MACHINE_TYPES = vocabulary.MASTER_MACHINE_TYPES  # never G (UK8S-doc gpu-node.md)
SECRET_OUTPUTS = ["password", "kubeconfig", "internal_kubeconfig"]
SECRET_INPUTS = ["password"]

# Like the Terraform provider: first poll after 100 s, give up after 30 min.
CLUSTER_TIMINGS = Timings(
    retry=RetryPolicy(),
    ready=WaitPolicy(timeout=1800.0, first_delay=100.0, interval=10.0),
    gone=WaitPolicy(timeout=600.0, first_delay=0.0, interval=10.0),
)
# How long a RUNNING cluster may take to hand out ExternalKubeConfig (SDK GetClusterConfig: it
# has data when the public API server is on, services/uk8s/client.py:1169). No source says when
# it appears: the bound is ours, capped by the ready wait's timeout (short timings shorten it).
KUBECONFIG_TIMEOUT = 600.0


class KubeconfigUnavailableError(UCloudProviderError):
    """The external kubeconfig never came; the VPC-internal one is not handed out instead."""


@dataclass
class Uk8sClusterArgs:
    """Inputs of a UK8S cluster (three masters); memory in MB, `password` is a secret."""

    region: pulumi.Input[str]
    name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    password: pulumi.Input[str]
    k8s_version: pulumi.Input[str]
    master_zones: pulumi.Input[Sequence[pulumi.Input[str]]]
    project_id: pulumi.Input[str] | None = None
    service_cidr: pulumi.Input[str] = "172.17.0.0/16"
    master_machine_type: pulumi.Input[str] = "N"
    master_cpu: pulumi.Input[int] = 4
    master_mem: pulumi.Input[int] = 8192
    charge_type: pulumi.Input[str] = "Dynamic"
    image_id: pulumi.Input[str] | None = None
    external_api_server: pulumi.Input[bool] = True


class Uk8sClusterProvider(UCloudProvider):
    """Only the name changes in place (ModifyUK8SClusterName); the rest replaces the cluster."""

    kind = "UK8S cluster"
    defaults = args_defaults(Uk8sClusterArgs)
    updatable = frozenset({"name"})
    integer_fields = frozenset({"master_cpu", "master_mem"})
    default_timings = CLUSTER_TIMINGS
    ready_states = frozenset({RUNNING})
    failed_states = FAILED_STATES
    delete_failed_states = frozenset({"DELETEFAILED"})

    def __init__(self, timings: Timings | None = None, kubeconfig_wait: WaitPolicy | None = None):
        super().__init__(timings)
        ready = self.timings.ready
        self.kubeconfig_wait = kubeconfig_wait or replace(
            ready, first_delay=0.0, timeout=min(ready.timeout, KUBECONFIG_TIMEOUT)
        )

    def validate(self, checker: Checker, olds: Mapping[str, Any]) -> None:
        inputs = checker.inputs
        for field in ("name", "vpc_id", "subnet_id", "k8s_version"):
            checker.text(field)
        checker.region()
        checker.text("image_id", required=False)
        checker.password("password")
        checker.choice("master_machine_type", MASTER_MACHINE_TYPES)
        checker.choice("charge_type", CHARGE_TYPES)
        checker.in_range("master_cpu", vocabulary.MASTER_CPU)
        checker.in_range("master_mem", vocabulary.MASTER_MEMORY_MB)
        checker.boolean("external_api_server")
        low, high = vocabulary.SERVICE_CIDR_PREFIX
        checker.private_cidr("service_cidr", inputs.get("service_cidr"), low, high)
        zones = inputs.get("master_zones")
        if is_unknown(zones):
            return
        if (
            not isinstance(zones, list | tuple)
            or len(zones) != 3
            or not all(isinstance(z, str) and z for z in zones)
        ):
            checker.fail("master_zones", zones, "a list of exactly 3 zone names, e.g. cn-bj2-02")
            return
        for zone in dict.fromkeys(zones):
            checker.zone("master_zones", zone)

    def describe(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> Live | None:
        item = api.describe_one(
            "uk8s", "list_uk8s_cluster_v2", {"ClusterId": id_}, "ClusterSet", "ClusterId", id_
        )
        if item is None:
            return None
        status = str(item.get("Status") or "")
        return Live(
            status,
            {
                "name": item.get("ClusterName"),
                "status": status,
                "api_server": item.get("ApiServer") or "",
                "external_api_server_address": item.get("ExternalApiServer") or "",
                "pod_cidr": item.get("PodCIDR") or "",
                "create_time": int(item.get("CreateTime") or 0),
                # What UK8S runs (ClusterSet.K8sVersion, SDK); the input stays as written.
                "resolved_k8s_version": str(item.get("K8sVersion") or ""),
            },
            detail=str(item.get("ClusterLogInfo") or ""),
        )

    def find(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str | None:
        clusters = api.paged(
            lambda page: api.call_once("uk8s", "list_uk8s_cluster_v2", page), "ClusterSet"
        )
        for item in clusters:
            if (
                item.get("ClusterName") == inputs["name"]
                and item.get("VPCId") == inputs["vpc_id"]
                and item.get("SubnetId") == inputs["subnet_id"]
                and item.get("Status") not in GONE_OR_GOING
            ):
                return str(item["ClusterId"])
        return None

    def create_once(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str:
        request: dict[str, Any] = {
            "ClusterName": inputs["name"],
            "VPCId": inputs["vpc_id"],
            "SubnetId": inputs["subnet_id"],
            "ServiceCIDR": inputs["service_cidr"],
            "Password": base64.b64encode(str(inputs["password"]).encode()).decode(),
            "K8sVersion": inputs["k8s_version"],
            "MasterMachineType": inputs["master_machine_type"],
            # O-family hosts boot only from RSSD (vocabulary.boot_disk_type_for); SDK field name.
            "MasterBootDiskType": vocabulary.boot_disk_type_for(inputs["master_machine_type"]),
            "MasterCPU": inputs["master_cpu"],
            "MasterMem": inputs["master_mem"],
            "Master": [{"Zone": zone} for zone in inputs["master_zones"]],
            "ChargeType": inputs["charge_type"],
            "ExternalApiServer": "Yes" if inputs["external_api_server"] else "No",
        }
        if inputs.get("image_id"):
            request["ImageId"] = inputs["image_id"]
        # "1.30" becomes the newest 1.30.x that GetUK8SVersions offers (see uk8s_versions).
        request["K8sVersion"] = resolve_version(api, str(inputs["k8s_version"]))
        # invoke: the SDK schema requires ImageId and ProjectId, the API documents both optional.
        return str(api.invoke_once("CreateUK8SClusterV2", request)["ClusterId"])

    def wait_ready(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> Observation:
        """As the base wait, but ClusterLogInfo NORESOURCE ends it at once (see uk8s_stock)."""

        def poll() -> Observation:
            seen = self.observe(api, id_, props)
            if is_stock_out(seen.detail):
                zones = ", ".join(props["master_zones"])
                raise StockOutError(
                    self.kind,
                    id_,
                    seen.state,
                    seen.detail,
                    f"master machine type {props['master_machine_type']} with "
                    f"{props['master_cpu']} CPU / {props['master_mem']} MB in zones {zones}",
                )
            return seen

        return wait_for_state(
            self.timings.ready,
            self.kind,
            id_,
            poll,
            ready=self.ready_states,
            failed=self.failed_states,
        )

    def on_create_failed(
        self, api: UCloudApi, id_: str, inputs: Mapping[str, Any], failure: ResourceFailedError
    ) -> None:
        # A failed cluster still bills its masters: remove it before reporting.
        # (A timeout keeps it: the next `pulumi up` finds and adopts it by name.)
        try:
            self.delete(id_, inputs)
        except Exception as cleanup_error:
            failure.add_note(f"and removing {id_} failed too: {cleanup_error}")

    def outputs_from(
        self, api: UCloudApi, id_: str, inputs: Mapping[str, Any], observed: Mapping[str, Any]
    ) -> dict[str, Any]:
        outputs = super().outputs_from(api, id_, inputs, observed)
        return {**outputs, **self.wait_for_kubeconfigs(api, id_, inputs)}

    def kubeconfigs(
        self, api: UCloudApi, cluster_id: str, props: Mapping[str, Any]
    ) -> dict[str, str]:
        """One GetClusterConfig. `kubeconfig` is the external one when the external API server
        is on (empty while UK8S has none yet), else the VPC-internal one, the only one there is
        (UCloudDoc-Team/uk8s api/getconfig.md: KubeConfig is the 内网ApiServer credential)."""
        config = api.call("uk8s", "get_cluster_config", {"ClusterId": cluster_id})
        internal = str(config.get("KubeConfig") or "")
        external = str(config.get("ExternalKubeConfig") or "")
        return {
            "kubeconfig": external if props.get("external_api_server") else internal,
            "internal_kubeconfig": internal,
        }

    def wait_for_kubeconfigs(
        self, api: UCloudApi, cluster_id: str, props: Mapping[str, Any]
    ) -> dict[str, str]:
        """The kubeconfigs once `kubeconfig` is there: a laptop handed the VPC-internal one
        would hang on every Kubernetes call, so it never stands in for the external one."""
        found: dict[str, str] = {}
        wanted = "ExternalKubeConfig" if props.get("external_api_server") else "KubeConfig"

        def poll() -> Observation:
            found.update(self.kubeconfigs(api, cluster_id, props))
            return Observation("ready" if found["kubeconfig"] else f"no {wanted} yet")

        try:
            wait_for_state(self.kubeconfig_wait, self.kind, cluster_id, poll, ready={"ready"})
        except WaitTimeoutError as timeout:
            instead = (
                " although external_api_server is on. The VPC-internal kubeconfig is not used in "
                "its place (its API server is reachable only inside the VPC)"
                if wanted == "ExternalKubeConfig"
                else ""
            )
            raise KubeconfigUnavailableError(
                f"{self.kind} {cluster_id} is RUNNING, but GetClusterConfig returned no {wanted} "
                f"within {self.kubeconfig_wait.timeout:g}s{instead}. Run `pulumi up` again later "
                "(it adopts this cluster), or check the cluster's API server ULB in the console."
            ) from timeout
        return found

    def read(self, id_: str, props: dict[str, Any]) -> Any:
        result = super().read(id_, props)
        # UK8S hands out kubeconfigs only while RUNNING; otherwise keep the last ones, and keep
        # the last external one while GetClusterConfig has none.
        if result.id and result.outs is not None and result.outs.get("status") == RUNNING:
            fresh = self.kubeconfigs(self.api(props), id_, result.outs)
            result.outs.update({key: value for key, value in fresh.items() if value})
        return result

    def apply_update(
        self, api: UCloudApi, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any]
    ) -> None:
        api.call(
            "uk8s", "modify_uk8s_cluster_name", {"ClusterId": id_, "ClusterName": news["name"]}
        )

    def remove(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        request: dict[str, Any] = {"ClusterId": id_, "ReleaseUDisk": True}
        if props.get("external_api_server"):
            # The external API server's ULB has an EIP (UCloudDoc-Team/uk8s
            # userguide/createcluster.md:44). ucloud-cli sends ReleaseEIP=true to release it
            # (products/uk8s/internal/uk8s/delete.go:47-60: "the UK8S API accepts it"); the SDK
            # schema and API docs lack it, so it goes through the untyped invoke.
            request["ReleaseEIP"] = True
            api.invoke_once("DelUK8SCluster", request)
            return
        api.call_once("uk8s", "del_uk8s_cluster", request)


class Uk8sCluster(Resource, module=MODULE, name="Uk8sCluster"):
    """A UK8S cluster; `kubeconfig` (external when enabled) is a secret output."""

    region: pulumi.Output[str]
    project_id: pulumi.Output[str | None]
    name: pulumi.Output[str]
    vpc_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    service_cidr: pulumi.Output[str]
    k8s_version: pulumi.Output[str]
    master_zones: pulumi.Output[list[str]]
    external_api_server: pulumi.Output[bool]
    status: pulumi.Output[str]
    api_server: pulumi.Output[str]
    external_api_server_address: pulumi.Output[str]
    pod_cidr: pulumi.Output[str]
    create_time: pulumi.Output[int]
    kubeconfig: pulumi.Output[str]
    internal_kubeconfig: pulumi.Output[str]
    resolved_k8s_version: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        args: Uk8sClusterArgs,
        opts: pulumi.ResourceOptions | None = None,
        timings: Timings | None = None,
    ) -> None:
        props = resource_props(
            args,
            computed=[
                "status",
                "api_server",
                "external_api_server_address",
                "pod_cidr",
                "create_time",
                "kubeconfig",
                "internal_kubeconfig",
                "resolved_k8s_version",
            ],
            secrets=SECRET_INPUTS,
        )
        opts = with_secret_outputs(opts, SECRET_OUTPUTS)
        super().__init__(Uk8sClusterProvider(timings), resource_name, props, opts)

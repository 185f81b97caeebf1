"""ucloud_uk8s_cluster as a Pulumi dynamic resource: CreateUK8SClusterV2 / ListUK8SClusterV2 /
GetClusterConfig / ModifyUK8SClusterName / DelUK8SCluster."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from components.ucloud import vocabulary
from components.ucloud.api import UCloudApi
from components.ucloud.base import Live, Timings, UCloudProvider
from components.ucloud.errors import ResourceFailedError
from components.ucloud.resource import MODULE, args_defaults, resource_props, with_secret_outputs
from components.ucloud.retry import RetryPolicy
from components.ucloud.validation import CHARGE_TYPES, Checker, is_unknown
from components.ucloud.waiting import WaitPolicy

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
        # invoke: the SDK schema requires ImageId and ProjectId, the API documents both optional.
        return str(api.invoke_once("CreateUK8SClusterV2", request)["ClusterId"])

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
        return {**outputs, **self.kubeconfigs(api, id_)}

    def kubeconfigs(self, api: UCloudApi, cluster_id: str) -> dict[str, str]:
        config = api.call("uk8s", "get_cluster_config", {"ClusterId": cluster_id})
        internal = str(config.get("KubeConfig") or "")
        external = str(config.get("ExternalKubeConfig") or "")
        # Without an external API server only the VPC-internal kubeconfig exists.
        return {"kubeconfig": external or internal, "internal_kubeconfig": internal}

    def read(self, id_: str, props: dict[str, Any]) -> Any:
        result = super().read(id_, props)
        # UK8S hands out kubeconfigs only while RUNNING; otherwise keep the last ones.
        if result.id and result.outs is not None and result.outs.get("status") == RUNNING:
            result.outs.update(self.kubeconfigs(self.api(props), id_))
        return result

    def apply_update(
        self, api: UCloudApi, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any]
    ) -> None:
        api.call(
            "uk8s", "modify_uk8s_cluster_name", {"ClusterId": id_, "ClusterName": news["name"]}
        )

    def remove(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        api.call_once("uk8s", "del_uk8s_cluster", {"ClusterId": id_, "ReleaseUDisk": True})



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
            ],
            secrets=SECRET_INPUTS,
        )
        opts = with_secret_outputs(opts, SECRET_OUTPUTS)
        super().__init__(Uk8sClusterProvider(timings), resource_name, props, opts)

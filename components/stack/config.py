"""Typed, validated stack configuration.

Why: a typo in a CIDR or a GPU type should fail in `pulumi preview`, in one message that lists
every problem with its key, value and what is allowed — not twenty minutes into a cluster create.
Defaults live in Pulumi.yaml (the CLI applies them; `make plan` does the same), so this module
only reads, types and checks, and its sections (`cluster_args()` ...) build each component's Args.

Adding a key: declare it in Pulumi.yaml (type, default, description), add the field here (the
snake_case of the key, with the key as alias, and its check), and pass it on in the one section
whose component uses it.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import pulumi
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from components.errors import ConfigError
from components.k8s import gpu_drivers, inference, keda, model_fetch
from components.k8s.autoscaling import QueueAutoscalerArgs
from components.k8s.conventions import (
    DEFAULT_GPU_TAINT_KEY,
    DNS_LABEL,
    QUANTITY,
    image_version,
    is_pinned_revision,
    pinned_image_problem,
)
from components.k8s.gpu_drivers import GpuDriversArgs
from components.k8s.inference import InferenceServiceArgs, termination_grace_s
from components.k8s.keda import KedaArgs
from components.k8s.model_fetch import ModelFetchArgs
from components.k8s.monitoring import MonitoringArgs
from components.stack import capacity
from components.ucloud import vocabulary
from components.ucloud.cluster import GpuClusterArgs, GpuNodePoolArgs, nodes_per_zone
from components.ucloud.model_volume import ModelVolumeArgs
from components.ucloud.uk8s_node import GROUP_LABEL
from components.ucloud.validation import label_problem, taint_problem

PROJECT = "llm-uk8s"
# Where the local platform keeps the model on its (single) node: the PV's hostPath.
LOCAL_MODEL_HOST_PATH = "/var/lib/llm-uk8s/models"

# Every UCloud fact (GPU types, machine types, ranges) comes from components/ucloud/vocabulary.py,
# the same module the providers' check() reads, so both accept exactly the same values.
GPU_TYPES = vocabulary.GPU_TYPES
MACHINE_TYPES = vocabulary.MASTER_MACHINE_TYPES
# Minor versions kubernetes-validate ships schemas for that UK8S also offers (1.26 and later).
K8S_MINORS = range(26, 35)
# UK8S takes five label pairs per node; the node provider spends one on its group marker.
MAX_NODE_LABELS = vocabulary.MAX_NODE_LABELS - 1
PRIVATE_RANGES = tuple(ipaddress.ip_network(r.network) for r in vocabulary.VPC_RANGES)
# Inference pods: InferenceServiceArgs.validate accepts 1..64 (components/k8s/inference.py); the
# config takes the same range, so no value passes one and fails the other.
REPLICAS = vocabulary.Range(
    1, 64, source="components/k8s/inference.py InferenceServiceArgs.validate"
)
# Namespaces Kubernetes itself owns; deploying into them mixes our objects with the system's.
RESERVED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# The longest suffix the cluster component appends to the cluster name ("-subnet"), and the
# longest name the providers take (63): the name must leave room for it.
NAME_SUFFIX = len("-subnet")
MAX_NAME = 63

# Whole-number keys and the vocabulary range each must lie in (the providers' own ranges).
RANGES: dict[str, vocabulary.Range] = {
    "master_cpu": vocabulary.MASTER_CPU,
    "master_memory_mb": vocabulary.MASTER_MEMORY_MB,
    "gpu_node_cpu": vocabulary.NODE_CPU,
    "gpu_node_memory_mb": vocabulary.NODE_MEMORY_MB,
    "gpu_node_count": vocabulary.GPU_NODE_COUNT,
    # The NAT EIP is billed by bandwidth (EipArgs.charge_mode default "Bandwidth").
    "nat_bandwidth_mbps": vocabulary.EIP_BANDWIDTH_MBPS["Bandwidth"],
    "replicas": REPLICAS,
    "min_replicas": REPLICAS,
    "max_replicas": REPLICAS,
}
# Pulumi.yaml's default inferenceImage: a name no one may have pushed (README, Deploy step 5).
DEFAULT_INFERENCE_IMAGE = "uhub.service.ucloud.cn/llm-uk8s/llm-uk8s-server:0.1.0"
# The drain the server does on SIGTERM (InferenceServiceArgs.drain_seconds default).
DRAIN_SECONDS = InferenceServiceArgs.drain_seconds

_REPO_ID = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*$")


def _is_private(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """IPv4 inside one of the RFC 1918 ranges."""
    return net.version == 4 and any(net.subnet_of(r) for r in PRIVATE_RANGES)


def _split_pairs(items: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not key=value")
        pairs.append((name, value))
    return pairs


PositiveInt = Annotated[int, Field(ge=1)]


class StackConfig(BaseModel):
    """One stack's settings; field aliases are the Pulumi config keys."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, str_strip_whitespace=True
    )

    stack: str
    platform: Literal["ucloud", "local"]
    region: str
    zones: list[str] = Field(min_length=1)
    project_id: str = Field(alias="projectId", pattern=r"^(org-[A-Za-z0-9]+)?$")
    vpc_cidr: str = Field(alias="vpcCidr")
    subnet_cidr: str = Field(alias="subnetCidr")
    service_cidr: str = Field(alias="serviceCidr")
    cluster_name: str = Field(alias="clusterName", pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$|^$")
    kubernetes_version: str = Field(alias="kubernetesVersion")
    master_machine_type: Literal[MACHINE_TYPES] = Field(alias="masterMachineType")  # type: ignore[valid-type]
    master_cpu: int = Field(alias="masterCpu")
    master_memory_mb: int = Field(alias="masterMemoryMb")
    external_api_server: bool = Field(alias="externalApiServer")
    preflight: bool = Field(alias="preflight")
    nat_bandwidth_mbps: int = Field(alias="natBandwidthMbps")
    nat_internet_type: Literal[tuple(vocabulary.EIP_INTERNET_TYPES)] = Field(
        alias="natInternetType"
    )  # type: ignore[valid-type]
    charge_type: Literal[vocabulary.CHARGE_TYPES] = Field(alias="chargeType")  # type: ignore[valid-type]
    gpu_machine_type: Literal[vocabulary.GPU_MACHINE_TYPE] = Field(alias="gpuMachineType")  # type: ignore[valid-type]
    gpu_type: Literal[GPU_TYPES] = Field(alias="gpuType")  # type: ignore[valid-type]
    gpus_per_node: Literal[vocabulary.GPUS_PER_NODE] = Field(alias="gpusPerNode")  # type: ignore[valid-type]
    gpu_node_cpu: int = Field(alias="gpuNodeCpu")
    gpu_node_memory_mb: int = Field(alias="gpuNodeMemoryMb")
    gpu_node_count: int = Field(alias="gpuNodeCount")
    gpu_node_image_id: str = Field(alias="gpuNodeImageId")
    gpu_node_labels: list[str] = Field(alias="gpuNodeLabels")
    gpu_node_taints: list[str] = Field(alias="gpuNodeTaints")
    gpu_driver_mode: Literal[gpu_drivers.MODES] = Field(alias="gpuDriverMode")  # type: ignore[valid-type]
    ufs_size_gb: int = Field(alias="ufsSizeGb")
    ufs_storage_type: Literal[vocabulary.UFS_STORAGE_TYPES] = Field(alias="ufsStorageType")  # type: ignore[valid-type]
    retain_model_data: bool = Field(alias="retainModelData")
    namespace: str = Field(pattern=DNS_LABEL.pattern)
    model_name: str = Field(alias="modelName", pattern=r"^[a-z0-9]([-a-z0-9._]{0,61}[a-z0-9])?$")
    model_source: Literal[model_fetch.SOURCES] = Field(alias="modelSource")  # type: ignore[valid-type]
    model_repo_id: str = Field(alias="modelRepoId")
    model_revision: str = Field(alias="modelRevision")
    model_shape: str = Field(alias="modelShape")
    model_fetch_timeout_seconds: int = Field(alias="modelFetchTimeoutSeconds", ge=300, le=86400)
    hub_endpoint: str = Field(alias="hubEndpoint", pattern=r"^(https?://[^\s/]+(/[^\s]*)?)?$")
    inference_image: str = Field(alias="inferenceImage")
    replicas: int
    gpus_per_replica: Literal[0, 1, 2, 4, 8] = Field(alias="gpusPerReplica")
    inference_cpu: str = Field(alias="inferenceCpu", pattern=QUANTITY.pattern)
    inference_memory: str = Field(alias="inferenceMemory", pattern=QUANTITY.pattern)
    max_batch: int = Field(alias="maxBatch", ge=1, le=1024)
    max_model_len: int = Field(alias="maxModelLen", ge=128, le=1_048_576)
    quantization: Literal[inference.QUANTIZATIONS]  # type: ignore[valid-type]
    service_type: Literal[inference.SERVICE_TYPES] = Field(alias="serviceType")  # type: ignore[valid-type]
    node_port: int = Field(alias="nodePort", ge=30000, le=32767)
    load_balancer_type: Literal[inference.UCLOUD_LB_TYPES] = Field(alias="loadBalancerType")  # type: ignore[valid-type]
    allowed_cidrs: list[str] = Field(alias="allowedCidrs")
    network_policy: bool = Field(alias="networkPolicy")
    kube_context: str = Field(alias="kubeContext")
    autoscaling: bool
    min_replicas: int = Field(alias="minReplicas")
    max_replicas: int = Field(alias="maxReplicas")
    autoscaling_waiting_target: int = Field(alias="autoscalingWaitingTarget", ge=1, le=10000)
    install_keda: bool = Field(alias="installKeda")
    prometheus_url: str = Field(alias="prometheusUrl", pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    monitoring: bool
    prometheus_operator: bool = Field(alias="prometheusOperator")
    monitoring_namespace: str = Field(alias="monitoringNamespace", pattern=DNS_LABEL.pattern)
    dashboard_namespace: str = Field(alias="dashboardNamespace", pattern=DNS_LABEL.pattern + "|^$")
    disable_uk8s_device_plugin: bool = Field(alias="disableUk8sDevicePlugin")

    # ---- single-field checks -------------------------------------------------------------

    @field_validator("gpus_per_node", "gpus_per_replica", mode="before")
    @classmethod
    def _int_choice(cls, value: Any) -> Any:
        """Config arrives as text; a choice among integers must still accept "2"."""
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    @field_validator(*RANGES)
    @classmethod
    def _in_range(cls, value: int, info: ValidationInfo) -> int:
        allowed = RANGES[str(info.field_name)]
        if not allowed.allows(value):
            raise ValueError(f"must be {allowed.describe()}")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value not in vocabulary.REGIONS:
            raise ValueError(
                "must be a UCloud region (API regionlist.md): " + ", ".join(vocabulary.REGIONS)
            )
        return value

    @field_validator("vpc_cidr", "subnet_cidr", "service_cidr")
    @classmethod
    def _private_cidr(cls, value: str, info: ValidationInfo) -> str:
        # The providers' limits: VPC per RFC 1918 block, subnet /16 or longer, Service CIDR
        # /12-/24 (components/ucloud/vocabulary.py).
        limits = {
            "vpc_cidr": (0, 32),
            "subnet_cidr": (vocabulary.SUBNET_MIN_PREFIX, 32),
            "service_cidr": vocabulary.SERVICE_CIDR_PREFIX,
        }[str(info.field_name)]
        problem = vocabulary.cidr_problem(value, *limits)
        if problem:
            raise ValueError(f"must be {problem}")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if value in RESERVED_NAMESPACES:
            raise ValueError(
                "is reserved for Kubernetes itself; allowed: any other DNS label "
                f"(not {', '.join(RESERVED_NAMESPACES)})"
            )
        return value

    @field_validator("hub_endpoint")
    @classmethod
    def _no_credentials_in_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "carries credentials (user:password@) that would land in Git and in the "
                "fetch Job's spec; remove them and set the token with "
                f"`pulumi config set --secret {PROJECT}:hubToken ...`"
            )
        return value

    @field_validator("model_shape")
    @classmethod
    def _model_shape(cls, value: str) -> str:
        if value:
            try:
                capacity.parse_shape(value)
            except ValueError as error:
                raise ValueError(
                    f"must be params=<count>,layers=<n>,kvHeads=<n>,headDim=<n> ({error})"
                ) from None
        return value

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        for cidr in values:
            ipaddress.ip_network(cidr, strict=False)
        return values

    @field_validator("kubernetes_version")
    @classmethod
    def _k8s_version(cls, value: str) -> str:
        match = re.fullmatch(r"1\.(\d+)(\.\d+)?", value)
        if not match or int(match.group(1)) not in K8S_MINORS:
            raise ValueError(
                f"must be 1.{K8S_MINORS.start} to 1.{K8S_MINORS.stop - 1} "
                "(major.minor or major.minor.patch)"
            )
        return value

    @field_validator("gpu_node_labels")
    @classmethod
    def _labels(cls, values: list[str]) -> list[str]:
        if len(values) > MAX_NODE_LABELS:
            raise ValueError(
                f"has {len(values)} labels; at most {MAX_NODE_LABELS} (UK8S takes "
                f"{vocabulary.MAX_NODE_LABELS}, one is {GROUP_LABEL})"
            )
        for key, value in _split_pairs(values):
            problem = label_problem(key, value)
            if problem:
                raise ValueError(problem)
        return values

    @field_validator("gpu_node_taints")
    @classmethod
    def _taints(cls, values: list[str]) -> list[str]:
        if len(values) > vocabulary.MAX_NODE_TAINTS:
            raise ValueError(
                f"has {len(values)} taints; at most {vocabulary.MAX_NODE_TAINTS} (UK8S takes "
                f"{vocabulary.MAX_NODE_TAINTS})"
            )
        for taint in values:
            problem = taint_problem(taint)
            if problem:
                raise ValueError(problem)
        return values

    @field_validator("inference_image")
    @classmethod
    def _pinned_image(cls, value: str) -> str:
        problem = pinned_image_problem(value)
        if problem is not None:
            raise ValueError(f"must be {problem}")
        return value

    # ---- cross-field checks --------------------------------------------------------------

    def problems(self, skip: Iterable[str] = ()) -> list[str]:
        """Rules that involve several keys; each message names the keys. Rules that read a
        field in `skip` (it failed its own check) are left out, so a bad field is reported
        once, together with every cross-field problem among the good ones."""
        bad = set(skip)

        def ok(*fields: str) -> bool:
            return not bad.intersection(fields)

        out: list[str] = []
        if ok("vpc_cidr", "subnet_cidr", "service_cidr"):
            out += self._network_problems()
        if ok("platform", "region", "zones"):
            out += self._zone_problems()
        if ok("ufs_size_gb", "ufs_storage_type", "region"):
            storage, region = self.ufs_storage_type, self.region
            if not vocabulary.ufs_size_allowed(region, storage, self.ufs_size_gb):
                create = vocabulary.ufs_size_range(storage).describe()
                grow = vocabulary.ufs_grow_range(region, storage).describe()
                out.append(
                    f"{PROJECT}:ufsSizeGb = {self.ufs_size_gb}: a new {storage} volume must be "
                    f"{create}; an existing one in {region} grows to {grow}"
                )
        if ok("cluster_name", "stack") and len(self.resolved_cluster_name) > MAX_NAME - NAME_SUFFIX:
            out.append(
                f"{PROJECT}:clusterName = {self.resolved_cluster_name!r}: at most "
                f"{MAX_NAME - NAME_SUFFIX} characters (the subnet is named <clusterName>-subnet, "
                f"and UCloud names take {MAX_NAME})"
            )
        out += self._placement_problems(ok)
        if ok("platform", "gpu_driver_mode", "gpus_per_replica") and self.platform == "local":
            if self.gpu_driver_mode != "none":
                out.append(
                    f"{PROJECT}:gpuDriverMode = {self.gpu_driver_mode!r}: the local "
                    "platform has no GPU nodes; use none"
                )
            if self.gpus_per_replica:
                out.append(
                    f"{PROJECT}:gpusPerReplica = {self.gpus_per_replica}: the local "
                    "platform runs on CPU; use 0"
                )
        if ok("model_source", "model_repo_id", "model_revision", "platform", "gpus_per_replica"):
            out += self._model_source_problems()
        quantization_ok = ok("platform", "gpus_per_replica", "gpu_type", "quantization")
        quantization = self._quantization_problems() if quantization_ok else []
        out += quantization
        fit_fields = ("model_source", "model_repo_id", "model_shape", "max_model_len", "max_batch")
        if quantization_ok and not quantization and ok(*fit_fields):
            out += self._gpu_fit_problems()
        if ok("min_replicas", "max_replicas") and self.max_replicas < self.min_replicas:
            out.append(
                f"{PROJECT}:maxReplicas = {self.max_replicas}: less than minReplicas "
                f"{self.min_replicas}; allowed: {self.min_replicas} or more"
            )
        if (
            ok("prometheus_operator", "monitoring")
            and self.prometheus_operator
            and not self.monitoring
        ):
            out.append(
                f"{PROJECT}:prometheusOperator = true: the PodMonitor is part of monitoring; "
                "set monitoring true as well (or prometheusOperator false)"
            )
        if (
            ok("disable_uk8s_device_plugin", "platform", "gpu_driver_mode")
            and self.disable_uk8s_device_plugin
            and (not self.uses_ucloud or self.gpu_driver_mode == "none")
        ):
            out.append(
                f"{PROJECT}:disableUk8sDevicePlugin = true: only a ucloud stack with GPU "
                "DaemonSets (gpuDriverMode preinstalled or daemonset) replaces UK8S's plugin; "
                "use false"
            )
        if ok("service_type", "allowed_cidrs", "load_balancer_type", "network_policy"):
            out += self._load_balancer_problems()
            if self.allowed_cidrs and self.service_type == "ClusterIP" and not self.network_policy:
                out.append(
                    f"{PROJECT}:allowedCidrs is set but nothing enforces it: use serviceType "
                    "LoadBalancer or networkPolicy true"
                )
        return out

    def warnings(self) -> list[str]:
        """Settings no source can confirm or refute: accepted, but said out loud."""
        out: list[str] = []
        if self.uses_ucloud and self.inference_image == DEFAULT_INFERENCE_IMAGE:
            out.append(
                f"{PROJECT}:inferenceImage = {self.inference_image!r} is the default, an image "
                "that may not exist: build and push yours (`make image`, `make push "
                "REGISTRY=...`), then `pulumi config set inferenceImage <it>`"
            )
        minor = int(self.kubernetes_version.split(".")[1])
        if self.autoscaling and self.install_keda and minor not in keda.SUPPORTED_K8S_MINORS:
            supported = keda.SUPPORTED_K8S_MINORS
            out.append(
                f"{PROJECT}:kubernetesVersion = {self.kubernetes_version!r}: KEDA "
                f"{keda.CHART_VERSION} supports Kubernetes 1.{supported.start} to "
                f"1.{supported.stop - 1} (keda.sh/docs/2.16/operate/cluster); autoscaling may "
                "not work"
            )
        if not self.uses_ucloud or not self.gpu_node_count:
            return out
        if vocabulary.gpu_zones(self.gpu_type) is None:
            zones = ", ".join(nodes_per_zone(self.zones, self.gpu_node_count))
            out.append(
                f"{PROJECT}:gpuType = {self.gpu_type!r}: no UCloud page lists the zones that "
                f"sell it; zone(s) {zones} are unconfirmed (a stock-out fails the node create)"
            )
        if self.gpus_per_replica and vocabulary.gpu_memory_gib(self.gpu_type) is None:
            out.append(
                f"{PROJECT}:gpuType = {self.gpu_type!r}: its memory is undocumented, so "
                "whether the model fits was not checked"
            )
        return out

    def _network_problems(self) -> list[str]:
        out: list[str] = []
        vpc = ipaddress.ip_network(self.vpc_cidr)
        subnet = ipaddress.ip_network(self.subnet_cidr)
        service = ipaddress.ip_network(self.service_cidr)
        if not subnet.subnet_of(vpc):  # type: ignore[arg-type]
            out.append(
                f"{PROJECT}:subnetCidr = {self.subnet_cidr!r}: must lie inside "
                f"vpcCidr {self.vpc_cidr}"
            )
        if service.overlaps(vpc):
            out.append(
                f"{PROJECT}:serviceCidr = {self.service_cidr!r}: overlaps vpcCidr "
                f"{self.vpc_cidr}; pick a range outside the VPC (e.g. 172.17.0.0/16)"
            )
        return out

    def _zone_problems(self) -> list[str]:
        if not self.uses_ucloud:
            return []
        known = vocabulary.zones_of(self.region)
        bad_zones = [z for z in self.zones if z not in known]
        if bad_zones:
            return [
                f"{PROJECT}:zones = {bad_zones!r}: not zones of region {self.region!r}; "
                f"allowed: {', '.join(known)} (API summary/regionlist.md)"
            ]
        return []

    def _placement_problems(self, ok: Callable[..., bool]) -> list[str]:
        """Where GPU nodes land (zones that sell the card), and whether the pods fit them."""
        fields = ("platform", "zones", "region", "gpu_type", "gpu_node_count", "gpus_per_node")
        if not ok(*fields) or not self.uses_ucloud:
            return []
        out: list[str] = []
        sold_in = vocabulary.gpu_zones(self.gpu_type)
        placed = list(nodes_per_zone(self.zones, self.gpu_node_count))
        if sold_in == ():
            out.append(
                f"{PROJECT}:gpuType = {self.gpu_type!r}: retired, sold in no zone (GPU-doc "
                "type.md); allowed: "
                + ", ".join(t for t in GPU_TYPES if vocabulary.gpu_zones(t) != ())
            )
        elif sold_in is not None and set(placed) - set(sold_in):
            out.append(
                f"{PROJECT}:zones = {self.zones!r}: GPU nodes are placed round-robin over the "
                f"first zones ({', '.join(placed)}), but {self.gpu_type} is sold only in "
                f"{', '.join(sold_in)} (GPU-doc type.md); put those zones first, or pick a "
                "gpuType sold there"
            )
        if ok("gpus_per_replica", "replicas", "max_replicas"):
            out += self._capacity_problems()
        if ok("inference_cpu", "inference_memory", "gpu_node_cpu", "gpu_node_memory_mb"):
            out += self._pod_fit_problems()
        return out

    def _capacity_problems(self) -> list[str]:
        if self.gpu_node_count == 0:
            return [
                f"{PROJECT}:gpuNodeCount = 0: a ucloud stack runs its pods on its GPU nodes "
                "(UK8S masters take no workloads); allowed: 1 or more"
            ]
        out: list[str] = []
        if self.gpus_per_replica > self.gpus_per_node:
            out.append(
                f"{PROJECT}:gpusPerReplica = {self.gpus_per_replica}: more than "
                f"gpusPerNode ({self.gpus_per_node}); a pod cannot span nodes"
            )
        elif self.gpus_per_replica:
            capacity_ = (self.gpus_per_node // self.gpus_per_replica) * self.gpu_node_count
            if self.replicas > capacity_:
                out.append(
                    f"{PROJECT}:replicas = {self.replicas}: {self.gpu_node_count} node(s) "
                    f"x {self.gpus_per_node} GPU(s) fit at most {capacity_} replica(s) of "
                    f"{self.gpus_per_replica} GPU(s)"
                )
            if self.max_replicas > capacity_:
                # A replica the pool cannot place stays Pending forever: refuse it here.
                out.append(
                    f"{PROJECT}:maxReplicas = {self.max_replicas}: the node pool gives at most "
                    f"gpuNodeCount {self.gpu_node_count} x (gpusPerNode {self.gpus_per_node} "
                    f"// gpusPerReplica {self.gpus_per_replica}) = {capacity_} replica(s); "
                    f"allowed: maxReplicas <= {capacity_}, or more GPU nodes"
                )
        elif self.gpu_node_taints:
            out.append(
                f"{PROJECT}:gpusPerReplica = 0: CPU pods do not tolerate gpuNodeTaints "
                f"{self.gpu_node_taints!r}, and the GPU nodes are the only nodes; use "
                "gpusPerReplica 1 or more, or gpuNodeTaints []"
            )
        return out

    def _pod_fit_problems(self) -> list[str]:
        cores, mib = capacity.node_allocatable(self.gpu_node_cpu, self.gpu_node_memory_mb)
        reserve = (
            f"a {self.gpu_node_cpu}-CPU, {self.gpu_node_memory_mb} MB node keeps back UK8S's "
            "kubelet reserve (0.2 CPU, 1000Mi), 5% memory eviction threshold and 0.5 CPU / "
            "1Gi for DaemonSets"
        )
        out: list[str] = []
        if capacity.quantity(self.inference_cpu) > cores:
            out.append(
                f"{PROJECT}:inferenceCpu = {self.inference_cpu!r}: more than a GPU node can "
                f"give a pod ({reserve}); allowed: at most {int(cores * 1000)}m, or a larger "
                "gpuNodeCpu"
            )
        if capacity.quantity(self.inference_memory) > mib * capacity.MIB:
            out.append(
                f"{PROJECT}:inferenceMemory = {self.inference_memory!r}: more than a GPU node "
                f"can give a pod ({reserve}); allowed: at most {int(mib)}Mi, or a larger "
                "gpuNodeMemoryMb"
            )
        return out

    def _model_source_problems(self) -> list[str]:
        out: list[str] = []
        if self.model_source == "huggingface":
            if not _REPO_ID.match(self.model_repo_id):
                out.append(f"{PROJECT}:modelRepoId = {self.model_repo_id!r}: must be org/name")
            if not is_pinned_revision(self.model_revision):
                out.append(
                    f"{PROJECT}:modelRevision = {self.model_revision!r}: pin a 40-character "
                    "commit sha (or a release tag such as v1.0); branches like main move"
                )
        elif self.platform == "ucloud" and self.gpus_per_replica:
            out.append(
                f"{PROJECT}:modelSource = 'bundled': the bundled model is a small CPU "
                "demo; a GPU stack needs modelSource huggingface"
            )
        return out

    @property
    def model_shape_known(self) -> capacity.ModelShape | None:
        """modelShape when set, else the table's entry for modelRepoId."""
        if self.model_shape:
            return capacity.parse_shape(self.model_shape)
        return capacity.KNOWN_MODELS.get(self.model_repo_id.lower())

    def _quantization_problems(self) -> list[str]:
        """Tensor parallel shards float weights only (image/llmserve/tensor_parallel.py). FP8
        needs FP8 tensor cores (compute capability 8.9+); the server would refuse to
        start on any other GPU, so the config refuses it first, and where the type's capability
        is unknown too (vocabulary.GpuSpec.capability_source)."""
        if self.quantization != "none" and self.gpus_per_replica > 1:
            return [
                f"{PROJECT}:quantization = {self.quantization!r}: with gpusPerReplica "
                f"{self.gpus_per_replica} the server shards the model over the pod's GPUs "
                "(LLMSERVE_TENSOR_PARALLEL), and it shards float weights only; allowed: "
                "quantization none with gpusPerReplica > 1, or gpusPerReplica 1"
            ]
        if not (self.uses_ucloud and self.gpus_per_replica and self.quantization == "fp8"):
            return []
        if capacity.fp8_runs_on(self.gpu_type):
            return []
        capability = vocabulary.gpu_capability(self.gpu_type)
        low, high = vocabulary.FP8_MIN_CAPABILITY
        why = (
            f"a {self.gpu_type} has compute capability {capability[0]}.{capability[1]}"
            if capability
            else f"the compute capability of {self.gpu_type} is unknown"
        )
        able = [t for t, spec in vocabulary.GPU_SPECS.items() if spec.zones != ()]
        able = [t for t in able if capacity.fp8_runs_on(t)]
        return [
            f"{PROJECT}:quantization = 'fp8': FP8 needs a GPU of compute capability "
            f"{low}.{high} or newer and {why}; allowed: quantization none or int8 on "
            f"{self.gpu_type}, or fp8 with gpuType one of " + ", ".join(able)
        ]

    def _gpu_fit_problems(self) -> list[str]:
        """Weights at the dtype the server picks for this GPU (quantized: capacity.py), plus the
        KV cache of maxBatch requests of maxModelLen tokens, plus headroom, must fit one GPU."""
        if not (self.uses_ucloud and self.gpus_per_replica and self.model_source == "huggingface"):
            return []
        shape = self.model_shape_known
        if shape is None:
            return [
                f"{PROJECT}:modelShape = '': the shape of {self.model_repo_id!r} is not known, "
                "so whether it fits a GPU cannot be checked; set modelShape to "
                "params=<count>,layers=<n>,kvHeads=<n>,headDim=<n> from the model's config.json"
            ]
        memory = vocabulary.gpu_memory_gib(self.gpu_type)
        if memory is None:
            return []  # warned about in warnings()
        quant = self.quantization
        need = capacity.gpu_need(
            shape, self.gpu_type, self.max_model_len, self.max_batch, memory, quant
        )
        if need.total_gib <= memory:
            return []
        batch, length = capacity.largest_fitting(
            shape, self.gpu_type, self.max_model_len, self.max_batch, quant
        )
        options = []
        if quant == "none" and capacity.fits(
            shape, self.gpu_type, self.max_model_len, self.max_batch, "int8"
        ):
            options.append("quantization int8")
        fitting = capacity.gpu_types_that_fit(shape, self.max_model_len, self.max_batch, quant)
        if fitting:
            options.append("gpuType one of " + ", ".join(fitting))
        if batch >= 1:
            options.append(f"maxBatch <= {batch} (at maxModelLen {self.max_model_len})")
        if length >= 128:
            options.append(f"maxModelLen <= {length} (at maxBatch {self.max_batch})")
        return [
            f"{PROJECT}:gpuType = {self.gpu_type!r}: the model needs {need.total_gib:.1f} GiB per "
            f"GPU at {need.dtype}{'' if quant == 'none' else f' with {quant} weights'} "
            f"(weights {need.weights_gib:.1f} + KV cache "
            f"{need.kv_gib:.1f} for maxModelLen {self.max_model_len} x maxBatch "
            f"{self.max_batch} + headroom {need.headroom_gib:.1f}) but a {self.gpu_type} has "
            f"{memory:g} GiB; would fit: " + ("; or ".join(options) or "nothing this stack offers")
        ]

    def _load_balancer_problems(self) -> list[str]:
        """An internet-facing ULB that admits only private sources serves nobody on the internet,
        and an inner ULB never sees public sources: either way the settings contradict."""
        if self.service_type != "LoadBalancer" or not self.allowed_cidrs:
            return []
        nets = [ipaddress.ip_network(c, strict=False) for c in self.allowed_cidrs]
        private = [n for n in nets if _is_private(n)]
        if self.load_balancer_type == "outer" and len(private) == len(nets):
            return [
                f"{PROJECT}:loadBalancerType = 'outer': allowedCidrs {self.allowed_cidrs!r} are "
                "all private, so an internet-facing ULB would admit nobody from outside; use "
                "loadBalancerType inner (allowed: inner, outer)"
            ]
        if self.load_balancer_type == "inner" and len(private) < len(nets):
            public = [str(n) for n in nets if n not in private]
            return [
                f"{PROJECT}:loadBalancerType = 'inner': allowedCidrs has public ranges {public!r} "
                "that a VPC-internal ULB never receives; use loadBalancerType outer "
                "(allowed: inner, outer)"
            ]
        return []

    @property
    def resolved_cluster_name(self) -> str:
        return self.cluster_name or f"{PROJECT}-{self.stack}"

    @property
    def node_labels(self) -> dict[str, str]:
        return dict(_split_pairs(self.gpu_node_labels))

    @property
    def gpu_taint_keys(self) -> list[str]:
        """Every GPU taint key GPU pods must tolerate (a node admits a pod only if it tolerates
        all its NoSchedule taints); nvidia.com/gpu when none is configured."""
        keys = [t.split(":")[0].split("=")[0] for t in self.gpu_node_taints]
        return list(dict.fromkeys(keys)) or [DEFAULT_GPU_TAINT_KEY]

    @property
    def uses_ucloud(self) -> bool:
        return self.platform == "ucloud"

    # ---- sections: each component's Args, built from the settings ------------------------
    # The one place where a config key meets the component field it sets. The fields above are
    # the keys in snake_case (the alias is the key); the Args fields are named after the resource
    # input they end in (master_mem, k8s_version, size, gpu, mem), so a component passes them on
    # unchanged. __main__.py only wires one component's outputs into the next one's section.

    def cluster_args(self) -> GpuClusterArgs:
        return GpuClusterArgs(
            region=self.region,
            project_id=self.project_id,
            zones=self.zones,
            vpc_cidr=self.vpc_cidr,
            subnet_cidr=self.subnet_cidr,
            service_cidr=self.service_cidr,
            cluster_name=self.resolved_cluster_name,
            k8s_version=self.kubernetes_version,
            master_machine_type=self.master_machine_type,
            master_cpu=self.master_cpu,
            master_mem=self.master_memory_mb,
            external_api_server=self.external_api_server,
            charge_type=self.charge_type,
            nat_bandwidth=self.nat_bandwidth_mbps,
            nat_internet_type=self.nat_internet_type,
            gpu_nodes=GpuNodePoolArgs(
                machine_type=self.gpu_machine_type,
                gpu_type=self.gpu_type,
                gpu=self.gpus_per_node,
                cpu=self.gpu_node_cpu,
                mem=self.gpu_node_memory_mb,
                count=self.gpu_node_count,
                image_id=self.gpu_node_image_id,
                labels=self.node_labels,
                taints=self.gpu_node_taints,
            ),
        )

    def model_volume_args(
        self, *, vpc_id: pulumi.Input[str], subnet_id: pulumi.Input[str]
    ) -> ModelVolumeArgs:
        """The UFS volume, mounted in the cluster's VPC and subnet (GpuCluster outputs)."""
        return ModelVolumeArgs(
            region=self.region,
            project_id=self.project_id,
            size=self.ufs_size_gb,
            storage_type=self.ufs_storage_type,
            charge_type=self.charge_type,
            vpc_id=vpc_id,
            subnet_id=subnet_id,
            retain=self.retain_model_data,
        )

    @property
    def instance(self) -> str:
        """app.kubernetes.io/instance of every object: this installation (project-stack)."""
        return f"{PROJECT}-{self.stack}"

    @property
    def app_version(self) -> str:
        """app.kubernetes.io/version of the server's objects: the image's tag."""
        return image_version(self.inference_image)

    def gpu_drivers_args(self) -> GpuDriversArgs:
        return GpuDriversArgs(
            mode=self.gpu_driver_mode,
            gpu_node_selector=self.node_labels,
            gpu_taint_keys=self.gpu_taint_keys,
            instance=self.instance,
            disable_uk8s_device_plugin=self.disable_uk8s_device_plugin,
        )

    def keda_args(self) -> KedaArgs | None:
        """KEDA, when autoscaling needs it and the cluster does not have it already."""
        if not (self.autoscaling and self.install_keda):
            return None
        return KedaArgs(instance=self.instance)

    def autoscaler_args(
        self,
        *,
        namespace: pulumi.Input[str],
        deployment_name: pulumi.Input[str],
        wait_for: Sequence[pulumi.Resource],
    ) -> QueueAutoscalerArgs | None:
        """The ScaledObject on queue depth; `wait_for` is KEDA (Keda.ready) and the Deployment."""
        if not self.autoscaling:
            return None
        return QueueAutoscalerArgs(
            namespace=namespace,
            deployment_name=deployment_name,
            served_model_name=self.model_name,
            prometheus_url=self.prometheus_url,
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            waiting_target=self.autoscaling_waiting_target,
            drain_grace_s=termination_grace_s(DRAIN_SECONDS),
            instance=self.instance,
            version=self.app_version,
            wait_for=wait_for,
        )

    def monitoring_args(
        self, *, namespace: pulumi.Input[str], pod_selector: Mapping[str, str]
    ) -> MonitoringArgs | None:
        """Dashboard ConfigMap (+ PodMonitor with the Prometheus Operator)."""
        if not self.monitoring:
            return None
        return MonitoringArgs(
            namespace=namespace,
            pod_selector=pod_selector,
            dashboard_namespace=self.dashboard_namespace or namespace,
            pod_monitor=self.prometheus_operator,
            instance=self.instance,
            version=self.app_version,
        )

    def model_fetch_args(
        self,
        *,
        namespace: pulumi.Input[str],
        nfs_server: pulumi.Input[str] | None,
        hub_token: pulumi.Input[str] | None,
    ) -> ModelFetchArgs:
        """PV, claim and fetch Job: over the UFS mount point (`nfs_server`, ModelVolume's
        output) on UCloud, over a node directory on a local cluster; `hub_token` is the secret
        `hub_token()` reads."""
        from_hub = self.model_source == "huggingface"
        return ModelFetchArgs(
            namespace=namespace,
            model_name=self.model_name,
            source=self.model_source,
            nfs_server=nfs_server,
            host_path=None if self.uses_ucloud else LOCAL_MODEL_HOST_PATH,
            repo_id=self.model_repo_id if from_hub else None,
            revision=self.model_revision if from_hub else None,
            hub_endpoint=self.hub_endpoint or None,
            hub_token=hub_token,
            fetch_image=self.inference_image,
            job_timeout_s=self.model_fetch_timeout_seconds,
            instance=self.instance,
        )

    def inference_args(
        self,
        *,
        namespace: pulumi.Input[str],
        model_claim_name: pulumi.Input[str],
        model_dir: str | None,
        model_revision: str | None,
        runtime_class_name: str | None,
        node_address: pulumi.Input[str] | None,
        wait_for: Sequence[pulumi.Resource],
    ) -> InferenceServiceArgs:
        """The server; the model's claim, directory and revision come from ModelFetch, the
        RuntimeClass from GpuDrivers, the NodePort address from GpuCluster, and `wait_for` lists
        what the Deployment must wait for (the fetch Job, the GPU DaemonSets)."""
        gpus = self.gpus_per_replica
        return InferenceServiceArgs(
            namespace=namespace,
            image=self.inference_image,
            model_claim_name=model_claim_name,
            served_model_name=self.model_name,
            model_dir=model_dir,
            model_revision=model_revision,
            replicas=self.replicas,
            gpus_per_replica=gpus,
            cpu_request=self.inference_cpu,
            cpu_limit=self.inference_cpu,
            memory_request=self.inference_memory,
            memory_limit=self.inference_memory,
            gpu_node_selector=self.node_labels if gpus else {},
            gpu_taint_keys=self.gpu_taint_keys,
            runtime_class_name=runtime_class_name if gpus else None,
            service_type=self.service_type,
            node_port=self.node_port,
            load_balancer_annotations=(
                inference.ucloud_lb_annotations(self.load_balancer_type) if self.uses_ucloud else {}
            ),
            node_address=node_address,
            network_policy=self.network_policy,
            allowed_cidrs=self.allowed_cidrs,
            max_batch=self.max_batch,
            max_model_len=self.max_model_len,
            quantization=self.quantization,
            wait_for=wait_for,
            instance=self.instance,
            autoscaled=self.autoscaling,
            metrics_scraper_namespace=self.monitoring_namespace if self.monitoring else None,
        )


KEYS: tuple[str, ...] = tuple(
    f.alias or name for name, f in StackConfig.model_fields.items() if name != "stack"
)
EXTRA_KEYS = {"hubToken"}  # read separately, as a secret
ARRAY_KEYS = {"zones", "gpuNodeLabels", "gpuNodeTaints", "allowedCidrs"}
# Secrets the stack reads; they must be set with --secret (or come from the environment).
SECRET_KEYS = {f"{PROJECT}:hubToken", "ucloud:publicKey", "ucloud:privateKey"}


class _Partial(StackConfig):
    """StackConfig that can be filled one field at a time, so every field is judged on its own
    and the cross-field rules can still run over the fields that passed."""

    model_config = ConfigDict(frozen=False)


def _redact(key: str, value: Any) -> Any:
    """Never echo credentials: a URL's user:password@ part becomes ***@."""
    if key == "hubEndpoint" and isinstance(value, str) and "@" in value:
        parts = urlsplit(value)
        host = parts.netloc.rsplit("@", 1)[-1]
        return parts._replace(netloc=f"***@{host}").geturl()
    return value


def _format(error: Mapping[str, Any]) -> str:
    key = ".".join(str(p) for p in error["loc"])
    field = StackConfig.model_fields.get(key)
    name = field.alias if field and field.alias else key
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{PROJECT}:{name} is not set (see Pulumi.yaml for its meaning and default)"
    return f"{PROJECT}:{name} = {_redact(name, error.get('input'))!r}: {message}"


def unknown_key_problems(keys: Iterable[str]) -> list[str]:
    """Keys the project does not declare, each with the nearest declared key (difflib)."""
    out = []
    for key in sorted(set(keys) - set(KEYS) - EXTRA_KEYS):
        close = difflib.get_close_matches(key, [*KEYS, *EXTRA_KEYS], n=1, cutoff=0.6)
        hint = f"; did you mean {PROJECT}:{close[0]}?" if close else " (known: see Pulumi.yaml)"
        out.append(f"{PROJECT}:{key} is not a known key{hint}")
    return out


def misspelt_prefix_problems(full_keys: Iterable[str]) -> list[str]:
    """Keys under a namespace that looks like this project's but is not (llm_uk8s:, llm-uk8:):
    the program never reads them, so the setting would be silently ignored."""
    out = []
    squeezed = re.sub(r"[-_.]", "", PROJECT)
    for full in sorted(full_keys):
        namespace, sep, key = full.partition(":")
        if not sep or namespace == PROJECT:
            continue
        similar = difflib.SequenceMatcher(None, namespace.lower(), PROJECT).ratio() >= 0.8
        if similar or re.sub(r"[-_.]", "", namespace.lower()) == squeezed:
            out.append(
                f"{full} is not read: the project prefix is {PROJECT}:, not {namespace}:; "
                f"set {PROJECT}:{key} instead"
            )
    return out


def parse(values: Mapping[str, Any], stack: str) -> StackConfig:
    """Type and check raw values (key -> str or JSON); raise ConfigError with every problem:
    unknown keys, each bad field, and every cross-field rule over the good fields, in one."""
    problems = unknown_key_problems(values)
    known = {k: v_ for k, v_ in values.items() if k in KEYS}
    partial = _Partial.model_construct()
    failed: set[str] = set()
    for name, field in StackConfig.model_fields.items():
        key = field.alias or name
        if name != "stack" and key not in known:
            problems.append(f"{PROJECT}:{key} is not set (see Pulumi.yaml for its meaning)")
            failed.add(name)
            continue
        try:
            _Partial.__pydantic_validator__.validate_assignment(
                partial, name, stack if name == "stack" else known[key]
            )
        except ValidationError as exc:
            problems += [_format(e) for e in exc.errors()]
            failed.add(name)
    problems += partial.problems(skip=failed)
    if problems:
        raise ConfigError(problems)
    return StackConfig.model_validate({"stack": stack, **known})


def decode_values(raw: Mapping[str, str]) -> dict[str, Any]:
    """Config values as text (key -> str; arrays as JSON) -> values for `parse`; hubToken left
    out. Raises ConfigError on the first array that is not JSON."""
    values: dict[str, Any] = {}
    for key, text in raw.items():
        if key in EXTRA_KEYS:
            continue
        if key in ARRAY_KEYS:
            try:
                values[key] = json.loads(text)
            except json.JSONDecodeError:
                raise ConfigError(
                    [f"{PROJECT}:{key} = {text!r}: must be a list (YAML sequence)"]
                ) from None
        else:
            values[key] = text
    return values


def parse_after_prefix_check(
    values: Mapping[str, Any], stack: str, prefix_problems: list[str]
) -> StackConfig:
    """`parse`, with the misspelt-prefix problems (misspelt_prefix_problems) reported first."""
    try:
        parsed = parse(values, stack)
    except ConfigError as error:
        raise ConfigError(prefix_problems + error.problems) from None
    if prefix_problems:
        raise ConfigError(prefix_problems)
    return parsed


def check_secrets(is_secret: Callable[[str], bool], present: Callable[[str], bool]) -> None:
    """Credentials and tokens must never sit in plain config (they would land in Git)."""
    plain = [k for k in sorted(SECRET_KEYS) if present(k) and not is_secret(k)]
    if plain:
        raise ConfigError(
            [
                f"{k} is set in plain text: remove it and set it again with "
                f"`pulumi config set --secret {k} ...`"
                for k in plain
            ]
        )


def _config_keys() -> list[str]:
    """Every full key ("namespace:key") the stack sets."""
    from pulumi.runtime import config as runtime_config  # the SDK keeps the merged map here

    return sorted({**runtime_config.get_config_env(), **runtime_config.CONFIG.get()})


def _project_keys_set(full_keys: Iterable[str]) -> list[str]:
    """Every key of this project that the stack sets, so a misspelt key is reported, not ignored."""
    prefix = PROJECT + ":"
    return sorted({k[len(prefix) :] for k in full_keys if k.startswith(prefix)} | set(KEYS))


def load() -> StackConfig:
    """Read this stack's config from the Pulumi runtime."""
    config = pulumi.Config(PROJECT)
    full_keys = _config_keys()
    prefix_problems = misspelt_prefix_problems(full_keys)
    raw = {key: config.get(key) for key in _project_keys_set(full_keys)}
    values = decode_values({key: text for key, text in raw.items() if text is not None})
    check_secrets(
        is_secret=pulumi.runtime.is_config_secret,
        present=lambda k: pulumi.runtime.get_config(k) is not None,
    )
    parsed = parse_after_prefix_check(values, pulumi.get_stack(), prefix_problems)
    for warning in parsed.warnings():
        pulumi.log.warn(warning)
    return parsed


def hub_token() -> pulumi.Output[str] | None:
    """The optional hub token, always as a secret Output."""
    return pulumi.Config(PROJECT).get_secret("hubToken")

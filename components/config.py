"""Typed, validated stack configuration.

Why: a typo in a CIDR or a GPU type should fail in `pulumi preview`, in one message that lists
every problem with its key, value and what is allowed — not twenty minutes into a cluster create.
Defaults live in Pulumi.yaml (the CLI applies them; `make plan` does the same), so this module
only reads, types and checks.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import pulumi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from components import k8s_helpers as h
from components.gpu import MODES as GPU_DRIVER_MODES
from components.inference import SERVICE_TYPES, UCLOUD_LB_TYPES
from components.model_store import SOURCES as MODEL_SOURCES
from components.ucloud.uk8s_cluster import CHARGE_TYPES
from components.ucloud.uk8s_node import GROUP_LABEL, TAINT_EFFECTS
from components.ucloud.uk8s_node import MAX_LABELS as UK8S_MAX_LABELS

PROJECT = "llm-uk8s"

# GPU models UCloud documents for its G machine family (UHost "GpuType").
GPU_TYPES = (
    "K80",
    "P40",
    "V100S",
    "T4",
    "T4S",
    "2080Ti",
    "2080Ti-4C",
    "3080Ti",
    "3090",
    "4090",
    "A10",
    "A100",
    "A800",
    "H20",
    "L20",
    "L40S",
)
MACHINE_TYPES = ("N", "C", "G", "O", "OS", "OM", "OPRO", "OMAX", "O.BM")
# Minor versions kubernetes-validate ships schemas for that UK8S also offers (1.26 and later).
K8S_MINORS = range(26, 35)
# UK8S takes five label pairs per node; the node provider spends one on its group marker.
MAX_NODE_LABELS = UK8S_MAX_LABELS - 1
PRIVATE_RANGES = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)

_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*$")


class ConfigError(ValueError):
    """Every problem of a stack's configuration, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid stack configuration:\n  - " + "\n  - ".join(problems))


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
    region: str = Field(pattern=r"^[a-z]{2,}(-[a-z0-9]+)*$")
    zones: list[str] = Field(min_length=1)
    project_id: str = Field(alias="projectId", pattern=r"^(org-[A-Za-z0-9]+)?$")
    vpc_cidr: str = Field(alias="vpcCidr")
    subnet_cidr: str = Field(alias="subnetCidr")
    service_cidr: str = Field(alias="serviceCidr")
    cluster_name: str = Field(alias="clusterName", pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$|^$")
    kubernetes_version: str = Field(alias="kubernetesVersion")
    master_machine_type: Literal[MACHINE_TYPES] = Field(alias="masterMachineType")  # type: ignore[valid-type]
    master_cpu: Literal[2, 4, 8, 16, 32] = Field(alias="masterCpu")
    master_memory_mb: int = Field(alias="masterMemoryMb", ge=4096, le=262144)
    external_api_server: bool = Field(alias="externalApiServer")
    nat_bandwidth_mbps: int = Field(alias="natBandwidthMbps", ge=1, le=10000)
    nat_internet_type: Literal["BGP", "International"] = Field(alias="natInternetType")
    charge_type: Literal[CHARGE_TYPES] = Field(alias="chargeType")  # type: ignore[valid-type]
    gpu_machine_type: Literal["G"] = Field(alias="gpuMachineType")
    gpu_type: Literal[GPU_TYPES] = Field(alias="gpuType")  # type: ignore[valid-type]
    gpus_per_node: Literal[1, 2, 4, 8] = Field(alias="gpusPerNode")
    gpu_node_cpu: int = Field(alias="gpuNodeCpu", ge=4, le=256)
    gpu_node_memory_mb: int = Field(alias="gpuNodeMemoryMb", ge=8192, le=2097152)
    gpu_node_count: int = Field(alias="gpuNodeCount", ge=0, le=50)
    gpu_node_image_id: str = Field(alias="gpuNodeImageId")
    gpu_node_labels: list[str] = Field(alias="gpuNodeLabels")
    gpu_node_taints: list[str] = Field(alias="gpuNodeTaints")
    gpu_driver_mode: Literal[GPU_DRIVER_MODES] = Field(alias="gpuDriverMode")  # type: ignore[valid-type]
    ufs_size_gb: int = Field(alias="ufsSizeGb", ge=100, le=102400)
    ufs_storage_type: Literal["Basic", "Advanced"] = Field(alias="ufsStorageType")
    retain_model_data: bool = Field(alias="retainModelData")
    namespace: str = Field(pattern=h.DNS_LABEL.pattern)
    model_name: str = Field(alias="modelName", pattern=r"^[a-z0-9]([-a-z0-9._]{0,61}[a-z0-9])?$")
    model_source: Literal[MODEL_SOURCES] = Field(alias="modelSource")  # type: ignore[valid-type]
    model_repo_id: str = Field(alias="modelRepoId")
    model_revision: str = Field(alias="modelRevision")
    model_fetch_timeout_seconds: int = Field(alias="modelFetchTimeoutSeconds", ge=300, le=86400)
    hub_endpoint: str = Field(alias="hubEndpoint", pattern=r"^(https?://[^\s/]+(/[^\s]*)?)?$")
    inference_image: str = Field(alias="inferenceImage")
    replicas: int = Field(ge=0, le=64)
    gpus_per_replica: Literal[0, 1, 2, 4, 8] = Field(alias="gpusPerReplica")
    inference_cpu: str = Field(alias="inferenceCpu", pattern=h.QUANTITY.pattern)
    inference_memory: str = Field(alias="inferenceMemory", pattern=h.QUANTITY.pattern)
    max_batch: int = Field(alias="maxBatch", ge=1, le=1024)
    max_model_len: int = Field(alias="maxModelLen", ge=128, le=1_048_576)
    service_type: Literal[SERVICE_TYPES] = Field(alias="serviceType")  # type: ignore[valid-type]
    node_port: int = Field(alias="nodePort", ge=30000, le=32767)
    load_balancer_type: Literal[UCLOUD_LB_TYPES] = Field(alias="loadBalancerType")  # type: ignore[valid-type]
    allowed_cidrs: list[str] = Field(alias="allowedCidrs")
    network_policy: bool = Field(alias="networkPolicy")
    kube_context: str = Field(alias="kubeContext")

    # ---- single-field checks -------------------------------------------------------------

    @field_validator("master_cpu", "gpus_per_node", "gpus_per_replica", mode="before")
    @classmethod
    def _int_choice(cls, value: Any) -> Any:
        """Config arrives as text; a choice among integers must still accept "2"."""
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    @field_validator("vpc_cidr", "subnet_cidr", "service_cidr")
    @classmethod
    def _private_cidr(cls, value: str) -> str:
        net = ipaddress.ip_network(value, strict=True)
        if not _is_private(net):
            raise ValueError(
                "must be an IPv4 CIDR inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
            )
        return value

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        for v in values:
            ipaddress.ip_network(v, strict=False)
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
                f"{UK8S_MAX_LABELS}, one is {GROUP_LABEL})"
            )
        for key, value in _split_pairs(values):
            if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
                raise ValueError(
                    f"{key}={value!r} is not a valid Kubernetes label "
                    "(prefix/name=value, alphanumerics, '-', '_', '.')"
                )
        return values

    @field_validator("gpu_node_taints")
    @classmethod
    def _taints(cls, values: list[str]) -> list[str]:
        for taint in values:
            match = re.fullmatch(r"([^=:]+)(=([^:]*))?:(\w+)", taint)
            if not match or match.group(4) not in TAINT_EFFECTS:
                raise ValueError(
                    f"{taint!r} must be key=value:Effect with Effect one of "
                    f"{', '.join(TAINT_EFFECTS)}"
                )
            if not _LABEL_KEY.match(match.group(1)):
                raise ValueError(f"{taint!r}: {match.group(1)!r} is not a valid taint key")
        return values

    @field_validator("inference_image")
    @classmethod
    def _pinned_image(cls, value: str) -> str:
        problem = h.pinned_image_problem(value)
        if problem is not None:
            raise ValueError(f"must be {problem}")
        return value

    # ---- cross-field checks --------------------------------------------------------------

    def problems(self) -> list[str]:
        """Rules that involve several keys; each message names the keys."""
        out: list[str] = []
        vpc = ipaddress.ip_network(self.vpc_cidr)
        subnet = ipaddress.ip_network(self.subnet_cidr)
        service = ipaddress.ip_network(self.service_cidr)
        if not subnet.subnet_of(vpc):
            out.append(
                f"{PROJECT}:subnetCidr = {self.subnet_cidr!r}: must lie inside "
                f"vpcCidr {self.vpc_cidr}"
            )
        if service.overlaps(vpc):
            out.append(
                f"{PROJECT}:serviceCidr = {self.service_cidr!r}: overlaps vpcCidr "
                f"{self.vpc_cidr}; pick a range outside the VPC (e.g. 172.17.0.0/16)"
            )
        bad_zones = [z for z in self.zones if not z.startswith(self.region + "-")]
        if bad_zones:
            out.append(
                f"{PROJECT}:zones = {bad_zones!r}: zones must belong to region "
                f"{self.region!r} (like {self.region}-01)"
            )
        minimum = 500 if self.ufs_storage_type == "Basic" else 100
        if self.ufs_size_gb % 100 or self.ufs_size_gb < minimum:
            out.append(
                f"{PROJECT}:ufsSizeGb = {self.ufs_size_gb}: must be a multiple of 100 and "
                f"at least {minimum} for {self.ufs_storage_type} UFS"
            )
        if self.gpus_per_replica > self.gpus_per_node and self.platform == "ucloud":
            out.append(
                f"{PROJECT}:gpusPerReplica = {self.gpus_per_replica}: more than "
                f"gpusPerNode ({self.gpus_per_node}); a pod cannot span nodes"
            )
        if self.platform == "ucloud" and self.gpus_per_replica:
            capacity = (self.gpus_per_node // self.gpus_per_replica) * self.gpu_node_count
            if self.replicas > capacity:
                out.append(
                    f"{PROJECT}:replicas = {self.replicas}: {self.gpu_node_count} node(s) "
                    f"x {self.gpus_per_node} GPU(s) fit at most {capacity} replica(s) of "
                    f"{self.gpus_per_replica} GPU(s)"
                )
        if self.platform == "local":
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
        if self.model_source == "huggingface":
            if not _REPO_ID.match(self.model_repo_id):
                out.append(f"{PROJECT}:modelRepoId = {self.model_repo_id!r}: must be org/name")
            if not h.is_pinned_revision(self.model_revision):
                out.append(
                    f"{PROJECT}:modelRevision = {self.model_revision!r}: pin a 40-character "
                    "commit sha (or a release tag such as v1.0); branches like main move"
                )
        elif self.platform == "ucloud" and self.gpus_per_replica:
            out.append(
                f"{PROJECT}:modelSource = 'bundled': the bundled model is a small CPU "
                "demo; a GPU stack needs modelSource huggingface"
            )
        out += self._load_balancer_problems()
        if self.allowed_cidrs and self.service_type == "ClusterIP" and not self.network_policy:
            out.append(
                f"{PROJECT}:allowedCidrs is set but nothing enforces it: use serviceType "
                "LoadBalancer or networkPolicy true"
            )
        return out

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
        return list(dict.fromkeys(keys)) or [h.DEFAULT_GPU_TAINT_KEY]

    @property
    def uses_ucloud(self) -> bool:
        return self.platform == "ucloud"


KEYS: tuple[str, ...] = tuple(
    f.alias or name for name, f in StackConfig.model_fields.items() if name != "stack"
)
EXTRA_KEYS = {"hubToken"}  # read separately, as a secret
ARRAY_KEYS = {"zones", "gpuNodeLabels", "gpuNodeTaints", "allowedCidrs"}
# Secrets the stack reads; they must be set with --secret (or come from the environment).
SECRET_KEYS = {f"{PROJECT}:hubToken", "ucloud:publicKey", "ucloud:privateKey"}


def _format(error: Mapping[str, Any]) -> str:
    key = ".".join(str(p) for p in error["loc"])
    field = StackConfig.model_fields.get(key)
    name = field.alias if field and field.alias else key
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{PROJECT}:{name} is not set (see Pulumi.yaml for its meaning and default)"
    return f"{PROJECT}:{name} = {error.get('input')!r}: {message}"


def parse(values: Mapping[str, Any], stack: str) -> StackConfig:
    """Type and check raw values (key -> str or JSON); raise ConfigError with every problem."""
    unknown = sorted(set(values) - set(KEYS) - EXTRA_KEYS)
    problems = [f"{PROJECT}:{k} is not a known key (known: see Pulumi.yaml)" for k in unknown]
    try:
        config = StackConfig.model_validate(
            {"stack": stack, **{k: v for k, v in values.items() if k in KEYS}}
        )
    except ValidationError as exc:
        raise ConfigError(problems + [_format(e) for e in exc.errors()]) from None
    problems += config.problems()
    if problems:
        raise ConfigError(problems)
    return config


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


def _project_keys_set() -> list[str]:
    """Every key of this project that the stack sets, so a misspelt key is reported, not ignored."""
    from pulumi.runtime import config as runtime_config  # the SDK keeps the merged map here

    prefix = PROJECT + ":"
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return sorted({k[len(prefix) :] for k in merged if k.startswith(prefix)} | set(KEYS))


def load() -> StackConfig:
    """Read this stack's config from the Pulumi runtime."""
    config = pulumi.Config(PROJECT)
    values: dict[str, Any] = {}
    for key in _project_keys_set():
        raw = config.get(key)
        if raw is None or key in EXTRA_KEYS:
            continue
        if key in ARRAY_KEYS:
            try:
                values[key] = json.loads(raw)
            except json.JSONDecodeError:
                raise ConfigError(
                    [f"{PROJECT}:{key} = {raw!r}: must be a list (YAML sequence)"]
                ) from None
        else:
            values[key] = raw
    check_secrets(
        is_secret=pulumi.runtime.is_config_secret,
        present=lambda k: pulumi.runtime.get_config(k) is not None,
    )
    return parse(values, pulumi.get_stack())


def hub_token() -> pulumi.Output[str] | None:
    """The optional hub token, always as a secret Output."""
    return pulumi.Config(PROJECT).get_secret("hubToken")

"""The one place where preflight reads the stack config: StackConfig -> what will be bought.

Why one module: every config field the preflight uses is read here, so a rename in
components/stack/config.py is one edit here. The config is checked by config.py itself (against
components/ucloud/vocabulary.py), so preflight starts from exactly what the program accepts;
placement follows the program (components/ucloud/cluster.py `master_zones`, `nodes_per_zone`)
and boot disks the program's choice (vocabulary.boot_disk_type_for), so preflight checks and
prices exactly the hosts `pulumi up` would create.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.stack import config as stack_config
from components.ucloud import vocabulary
from components.ucloud.cluster import master_zones, nodes_per_zone

PROJECT = stack_config.PROJECT
StackConfig = stack_config.StackConfig

# Boot disk type: the program's choice per machine family, vocabulary.boot_disk_type_for
# (uk8s_cluster.py sends it as MasterBootDiskType, uk8s_node.py as BootDiskType). Its size: the
# program sends no BootDiskSize / MasterBootDiskSize, so UCloud's default applies, 40 GB (SDK
# ucloud/services/uk8s/client.py, AddUK8SUHostNode BootDiskSize and CreateUK8SClusterV2
# MasterBootDiskSize "默认为40", range [40, 500]).
BOOT_DISK_GB = 40


def key(name: str) -> str:
    """A config key as users write it, e.g. llm-uk8s:gpuType."""
    return f"{PROJECT}:{name}"


@dataclass(frozen=True)
class HostGroup:
    """Identical UHosts in one zone, with the config keys that chose each property."""

    role: str  # "master" or "GPU node"
    zone: str
    count: int
    machine_type: str
    cpu: int
    memory_mb: int
    gpu_type: str | None
    gpus: int
    boot_disk_type: str
    boot_disk_gb: int
    machine_key: str  # the key a "not sold" problem names
    cpu_key: str
    memory_key: str
    gpus_key: str | None

    @property
    def shape(self) -> str:
        gpu = f" {self.gpu_type} x{self.gpus}," if self.gpu_type else ""
        return f"{self.machine_type}{gpu} {self.cpu} CPU, {self.memory_mb} MB"


@dataclass(frozen=True)
class StackPlan:
    """What the stack buys on UCloud, as preflight needs it."""

    stack: str
    region: str
    zones: tuple[str, ...]
    project_id: str
    charge_type: str
    kubernetes_version: str
    masters: tuple[HostGroup, ...]
    gpu_nodes: tuple[HostGroup, ...]
    gpu_machine_type: str
    gpu_type: str
    gpu_node_count: int
    gpu_node_image_id: str
    ufs_size_gb: int
    ufs_storage_type: str
    nat_bandwidth_mbps: int
    nat_operator: str  # GetEIPPrice / AllocateEIP OperatorName (Bgp, International)
    external_api_server: bool
    load_balancer: str | None  # "inner"/"outer" when the Service is a UCloud ULB

    @property
    def hosts(self) -> tuple[HostGroup, ...]:
        return self.masters + self.gpu_nodes


def parse_settings(config: Mapping[str, str], stack: str) -> StackConfig:
    """tools/stack_config.load_stack's flat map (CLI encoding) -> a checked StackConfig.

    Decodes and parses as components/stack/config.load does (decode_values,
    parse_after_prefix_check): project keys only, arrays JSON-decoded, hubToken left out,
    keys under a misspelt project prefix refused. Raises ConfigError with every problem.
    """
    prefix = PROJECT + ":"
    prefix_problems = stack_config.misspelt_prefix_problems(config)
    values = stack_config.decode_values(
        {full[len(prefix) :]: raw for full, raw in config.items() if full.startswith(prefix)}
    )
    return stack_config.parse_after_prefix_check(values, stack, prefix_problems)


def uses_ucloud(cfg: StackConfig) -> bool:
    return cfg.uses_ucloud


def plan_from_config(cfg: StackConfig) -> StackPlan:
    """The hosts, volume and addresses the program creates for this config."""
    masters: dict[str, int] = {}
    for zone in master_zones(list(cfg.zones)):
        masters[zone] = masters.get(zone, 0) + 1
    master_groups = tuple(
        HostGroup(
            role="master",
            zone=zone,
            count=count,
            machine_type=cfg.master_machine_type,
            cpu=int(cfg.master_cpu),
            memory_mb=cfg.master_memory_mb,
            gpu_type=None,
            gpus=0,
            boot_disk_type=vocabulary.boot_disk_type_for(cfg.master_machine_type),
            boot_disk_gb=BOOT_DISK_GB,
            machine_key="masterMachineType",
            cpu_key="masterCpu",
            memory_key="masterMemoryMb",
            gpus_key=None,
        )
        for zone, count in masters.items()
    )
    gpu_groups = tuple(
        HostGroup(
            role="GPU node",
            zone=zone,
            count=count,
            machine_type=cfg.gpu_machine_type,
            cpu=cfg.gpu_node_cpu,
            memory_mb=cfg.gpu_node_memory_mb,
            gpu_type=cfg.gpu_type,
            gpus=int(cfg.gpus_per_node),
            boot_disk_type=vocabulary.boot_disk_type_for(cfg.gpu_machine_type),
            boot_disk_gb=BOOT_DISK_GB,
            machine_key="gpuType",
            cpu_key="gpuNodeCpu",
            memory_key="gpuNodeMemoryMb",
            gpus_key="gpusPerNode",
        )
        for zone, count in nodes_per_zone(list(cfg.zones), cfg.gpu_node_count).items()
    )
    return StackPlan(
        stack=cfg.stack,
        region=cfg.region,
        zones=tuple(cfg.zones),
        project_id=cfg.project_id,
        charge_type=cfg.charge_type,
        kubernetes_version=cfg.kubernetes_version,
        masters=master_groups,
        gpu_nodes=gpu_groups,
        gpu_machine_type=cfg.gpu_machine_type,
        gpu_type=cfg.gpu_type,
        gpu_node_count=cfg.gpu_node_count,
        gpu_node_image_id=cfg.gpu_node_image_id,
        ufs_size_gb=cfg.ufs_size_gb,
        ufs_storage_type=cfg.ufs_storage_type,
        nat_bandwidth_mbps=cfg.nat_bandwidth_mbps,
        nat_operator=vocabulary.EIP_INTERNET_TYPES[cfg.nat_internet_type],
        external_api_server=cfg.external_api_server,
        load_balancer=cfg.load_balancer_type if cfg.service_type == "LoadBalancer" else None,
    )


def variant(
    cfg: StackConfig,
    *,
    charge_type: str | None = None,
    gpu_type: str | None = None,
    gpu_node_count: int | None = None,
) -> StackPlan:
    """The same stack with one setting changed, for the cost view (no re-validation)."""
    update: dict[str, Any] = {}
    if charge_type is not None:
        update["charge_type"] = charge_type
    if gpu_type is not None:
        update["gpu_type"] = gpu_type
    if gpu_node_count is not None:
        update["gpu_node_count"] = gpu_node_count
    return plan_from_config(cfg.model_copy(update=update))

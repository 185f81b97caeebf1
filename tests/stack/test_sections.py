"""The config's sections build each component's Args, and those Args are named after the resource
inputs they end in, so no component renames a setting on its way to UCloud."""

from __future__ import annotations

from dataclasses import fields

from components.stack.config import parse
from components.ucloud import (
    EipArgs,
    UfsMountPointArgs,
    UfsVolumeArgs,
    Uk8sClusterArgs,
    Uk8sNodeArgs,
)
from components.ucloud.cluster import GpuClusterArgs, GpuNodePoolArgs
from components.ucloud.model_volume import ModelVolumeArgs
from tests.stack.stack_values import raw_values


def names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def test_node_pool_fields_are_node_inputs() -> None:
    assert names(GpuNodePoolArgs) <= names(Uk8sNodeArgs)


def test_cluster_fields_are_the_inputs_they_become() -> None:
    own = {"zones", "vpc_cidr", "subnet_cidr", "cluster_name", "gpu_nodes"}  # spread or nested
    nat = {n for n in names(GpuClusterArgs) if n.startswith("nat_")}
    assert {n.removeprefix("nat_") for n in nat} <= names(EipArgs)
    assert names(GpuClusterArgs) - own - nat <= names(Uk8sClusterArgs)


def test_model_volume_fields_are_volume_or_mount_inputs() -> None:
    volume = names(ModelVolumeArgs) - {"retain"}  # retain is the `protect` option
    assert volume <= names(UfsVolumeArgs) | names(UfsMountPointArgs)


def test_sections_carry_the_settings_unchanged() -> None:
    cfg = parse(raw_values("prod"), "prod")
    cluster = cfg.cluster_args()
    assert cluster.master_mem == cfg.master_memory_mb
    assert cluster.k8s_version == cfg.kubernetes_version
    assert cluster.nat_bandwidth == cfg.nat_bandwidth_mbps
    assert cluster.gpu_nodes.gpu == cfg.gpus_per_node
    assert cluster.gpu_nodes.mem == cfg.gpu_node_memory_mb
    assert cfg.model_volume_args(vpc_id="v", subnet_id="s").size == cfg.ufs_size_gb

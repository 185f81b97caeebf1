"""Config and the providers' check() accept exactly the same values: every range's edges and
steps, every enum member and a non-member, walked through the real config parser and each
provider's real check() (on the inputs the dev stack's plan gives that provider)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from components.errors import ConfigError
from components.stack.config import PROJECT, parse
from components.ucloud import vocabulary
from components.ucloud.eip import EipProvider
from components.ucloud.subnet import SubnetProvider
from components.ucloud.ufs_volume import UfsVolumeProvider
from components.ucloud.uk8s_cluster import Uk8sClusterProvider
from components.ucloud.uk8s_node import Uk8sNodeProvider
from components.ucloud.vpc import VpcProvider
from tests.stack.stack_values import UCLOUD, planned, raw_values

PROVIDERS = {
    "Uk8sCluster": Uk8sClusterProvider,
    "Uk8sNode": Uk8sNodeProvider,
    "UfsVolume": UfsVolumeProvider,
    "Eip": EipProvider,
    "Vpc": VpcProvider,
    "Subnet": SubnetProvider,
}
# GPU-fit and CPU-pod rules are config-only (no provider knows the model): keep them out of walks
# of the GPU and node settings.
NO_FIT = {"gpusPerReplica": 0, "gpuNodeTaints": [], "inferenceCpu": "1", "inferenceMemory": "1Gi"}


def edges(r: vocabulary.Range) -> list[int]:
    """low-1, low, high, high+1, and a step violation on each side."""
    values = {r.low - 1, r.low, r.high, r.high + 1, r.low + r.step, r.high - r.step}
    if r.step > 1:
        values |= {r.low + 1, r.high - 1}
    return sorted(values)


def config_accepts(overrides: dict[str, Any], keys: tuple[str, ...]) -> bool:
    try:
        parse(raw_values("dev", **overrides), "dev")
    except ConfigError as error:
        return not any(p.startswith(f"{PROJECT}:{k} ") for k in keys for p in error.problems)
    return True


def provider_accepts(kind: str, changes: dict[str, Any], fields: tuple[str, ...]) -> bool:
    inputs = {**planned("dev").one(UCLOUD + kind).raw_inputs, **changes}
    olds_to_try: list[dict[str, Any]] = [{}]
    if kind == "UfsVolume":  # config cannot know whether the volume exists: create or grow
        smallest = vocabulary.ufs_size_range(inputs["storage_type"]).low
        olds_to_try.append({**inputs, "size": smallest})
    for olds in olds_to_try:
        result = PROVIDERS[kind]().check(olds, inputs)
        if not any(f.property in fields for f in result.failures):
            return True
    return False


Case = tuple[str, dict[str, Any], tuple[str, ...], str, dict[str, Any], tuple[str, ...]]


def cases() -> Iterator[Case]:
    """(id, config overrides, config keys, provider kind, provider changes, provider fields)."""
    ranged = [
        ("masterCpu", vocabulary.MASTER_CPU, "Uk8sCluster", "master_cpu", {}),
        ("masterMemoryMb", vocabulary.MASTER_MEMORY_MB, "Uk8sCluster", "master_mem", {}),
        ("gpuNodeCpu", vocabulary.NODE_CPU, "Uk8sNode", "cpu", NO_FIT),
        ("gpuNodeMemoryMb", vocabulary.NODE_MEMORY_MB, "Uk8sNode", "mem", NO_FIT),
        ("natBandwidthMbps", vocabulary.EIP_BANDWIDTH_MBPS["Bandwidth"], "Eip", "bandwidth", {}),
    ]
    for key, allowed, kind, field, extra in ranged:
        for value in edges(allowed):
            yield (f"{key}={value}", {key: value, **extra}, (key,), kind, {field: value}, (field,))
    # A node group holds 1-50 nodes; gpuNodeCount 0 makes no group (and is refused by config's
    # own rule that a ucloud stack needs a node), so the walk starts at 1.
    for value in [1, 2, 49, 50, 51]:
        yield (
            f"gpuNodeCount={value}",
            {"gpuNodeCount": value, "replicas": 1, **NO_FIT},
            ("gpuNodeCount",),
            "Uk8sNode",
            {"count": value},
            ("count",),
        )
    for storage, allowed in vocabulary.UFS_SIZE_GB.items():
        grow = vocabulary.ufs_grow_range("cn-bj2", storage)  # the dev stack's region
        for value in sorted({*edges(allowed), *edges(grow)}):
            yield (
                f"ufs {storage} {value}",
                {"ufsStorageType": storage, "ufsSizeGb": value},
                ("ufsSizeGb",),
                "UfsVolume",
                {"storage_type": storage, "size": value},
                ("size",),
            )
    for value in [*vocabulary.MASTER_MACHINE_TYPES, "G", "OMAX", "O.BM", "X"]:
        yield (
            f"masterMachineType={value}",
            {"masterMachineType": value},
            ("masterMachineType",),
            "Uk8sCluster",
            {"master_machine_type": value},
            ("master_machine_type",),
        )
    for value in [*vocabulary.CHARGE_TYPES, "Postpay", "Weekly"]:
        for kind in ("Uk8sCluster", "UfsVolume", "Eip"):
            yield (
                f"chargeType={value} {kind}",
                {"chargeType": value},
                ("chargeType",),
                kind,
                {"charge_type": value},
                ("charge_type",),
            )
    for value in [*vocabulary.GPUS_PER_NODE, 0, 3, 16]:
        yield (
            f"gpusPerNode={value}",
            {"gpusPerNode": value, **NO_FIT},
            ("gpusPerNode",),
            "Uk8sNode",
            {"gpu": value},
            ("gpu",),
        )
    for value in [*vocabulary.GPU_TYPES, "3080Ti", "A10", "L20", "L40S", "H100X"]:
        zone = (vocabulary.gpu_zones(value) or ("cn-bj2-05",))[0]
        region = vocabulary.region_of_zone(zone) or "cn-bj2"
        yield (
            f"gpuType={value}",
            {"gpuType": value, "region": region, "zones": [zone], **NO_FIT},
            ("gpuType", "zones"),
            "Uk8sNode",
            {"gpu_type": value, "region": region, "zone": zone},
            ("gpu_type", "zone"),
        )
    for value in ["BGP", "International", "Bgp", "Cable"]:
        yield (
            f"natInternetType={value}",
            {"natInternetType": value},
            ("natInternetType",),
            "Eip",
            {"internet_type": value},
            ("internet_type",),
        )
    for count in range(vocabulary.MAX_NODE_LABELS + 1):
        labels = ["llm-uk8s/gpu=true"] + [f"k{i}=v" for i in range(count - 1)] if count else []
        yield (
            f"{count} labels",
            {"gpuNodeLabels": labels},
            ("gpuNodeLabels",),
            "Uk8sNode",
            {"labels": dict(x.split("=") for x in labels)},
            ("labels",),
        )
    for label in ["a,b=c", "a=b,c", "a b=c", "-a=b", "ex.com/a=b", "a=" + "x" * 64]:
        yield (
            f"label {label[:12]}",
            {"gpuNodeLabels": [label]},
            ("gpuNodeLabels",),
            "Uk8sNode",
            {"labels": dict([label.split("=", 1)])},
            ("labels",),
        )
    for count in range(vocabulary.MAX_NODE_TAINTS + 2):
        taints = [f"k{i}=v:NoSchedule" for i in range(count)]
        yield (
            f"{count} taints",
            {"gpuNodeTaints": taints},
            ("gpuNodeTaints",),
            "Uk8sNode",
            {"taints": taints},
            ("taints",),
        )
    for taint in ["k=v:Sometimes", "k:NoSchedule", "k=:NoExecute", "a,b=c:NoSchedule"]:
        yield (
            f"taint {taint}",
            {"gpuNodeTaints": [taint]},
            ("gpuNodeTaints",),
            "Uk8sNode",
            {"taints": [taint]},
            ("taints",),
        )
    for cidr in [
        "10.0.0.0/8",
        "10.0.0.0/7",
        "10.60.0.0/29",
        "10.60.0.0/30",
        "172.16.0.0/12",
        "172.16.0.0/11",
        "192.168.0.0/16",
        "192.168.0.0/15",
        "127.0.0.0/8",
        "100.64.0.0/10",
        "10.60.0.1/16",
    ]:
        yield (
            f"vpcCidr={cidr}",
            {"vpcCidr": cidr},
            ("vpcCidr",),
            "Vpc",
            {"cidr_blocks": [cidr]},
            ("cidr_blocks",),
        )
    for cidr in ["10.60.0.0/15", "10.60.0.0/16", "10.60.0.0/29", "10.60.0.0/30"]:
        yield (
            f"subnetCidr={cidr}",
            {"subnetCidr": cidr, "vpcCidr": "10.0.0.0/8", "serviceCidr": "172.17.0.0/16"},
            ("subnetCidr",),
            "Subnet",
            {"cidr_block": cidr},
            ("cidr_block",),
        )
    for cidr in [
        "172.16.0.0/11",
        "172.16.0.0/12",
        "172.17.0.0/24",
        "172.17.0.0/25",
        "192.168.0.0/16",
        "198.18.0.0/15",
    ]:
        yield (
            f"serviceCidr={cidr}",
            {"serviceCidr": cidr},
            ("serviceCidr",),
            "Uk8sCluster",
            {"service_cidr": cidr},
            ("service_cidr",),
        )
    for zone in ["cn-bj2-02", "cn-bj2-03", "cn-bj2-04", "cn-bj2-05", "cn-sh2-01"]:
        yield (
            f"zones={zone}",
            {"zones": [zone], "gpuType": "K80", **NO_FIT},
            ("zones",),
            "Uk8sCluster",
            {"master_zones": [zone] * 3},
            ("master_zones",),
        )
        yield (
            f"node zone={zone}",
            {"zones": [zone], "gpuType": "K80", **NO_FIT},
            ("zones",),
            "Uk8sNode",
            {"zone": zone, "gpu_type": "K80"},
            ("zone",),
        )


CASES = list(cases())


@pytest.mark.parametrize(
    ("overrides", "keys", "kind", "changes", "fields"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_config_and_check_agree(
    overrides: dict[str, Any],
    keys: tuple[str, ...],
    kind: str,
    changes: dict[str, Any],
    fields: tuple[str, ...],
) -> None:
    assert config_accepts(overrides, keys) == provider_accepts(kind, changes, fields)


def test_the_walk_sees_both_answers() -> None:
    """A walk where everything passes (or fails) would prove nothing."""
    answers = {provider_accepts(c[3], c[4], c[5]) for c in CASES}
    assert answers == {True, False}

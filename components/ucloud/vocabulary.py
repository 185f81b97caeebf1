"""UCloud's vocabulary as data: regions, zones, GPU types, machine types, disks, ranges and steps.

Why one module: the stack config (components/stack/config.py) and every provider's check() read the
same facts from here, so config can never accept what a provider then refuses at preview, and a
fact found wrong is fixed in one place. Every fact names its source; all were read on READ_ON.
Where no source confirms a fact the comment says "unconfirmed" (and the value is our choice).

Sources (commits as read):
- API      = UCloudDoc-Team/api @cd570df (UCloud's API reference, markdown)
- GPU-doc  = UCloudDoc-Team/gpu @6f313ed (UCloud's GPU host docs)
- UK8S-doc = UCloudDoc-Team/uk8s @f1a13e6 (UCloud's UK8S docs)
- TF       = ucloud/terraform-provider-ucloud @cf0bcaf (Go source)
- SDK      = ucloud-sdk-python3 0.11.150 (services/*/client.py docstrings, schemas/apis.py)
- NVIDIA   = NVIDIA's product pages and datasheets; CUDA compute capabilities from
             developer.nvidia.com/cuda-gpus ("CUDA GPU Compute Capability")
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

READ_ON = "2026-12-01"

# ---- regions and zones -------------------------------------------------------------------------
# API summary/regionlist.md, "各可用区 (Zone) 名称列表": 43 zones in 33 regions. Note cn-bj2 has
# -02 (B), -03 (C) and -05 (E) only: there is no cn-bj2-04. Letters: 可用区A = -01, B = -02 ...
REGION_ZONES: dict[str, tuple[str, ...]] = {
    "cn-bj1": ("cn-bj1-01",),
    "cn-bj2": ("cn-bj2-02", "cn-bj2-03", "cn-bj2-05"),
    "cn-wlcb": ("cn-wlcb-01", "cn-wlcb-03"),
    "cn-wlcb2": ("cn-wlcb2-01",),
    "cn-sh2": ("cn-sh2-01", "cn-sh2-02", "cn-sh2-03"),
    "cn-jx": ("cn-jx-01",),
    "cn-sh": ("cn-sh-01", "cn-sh-02", "cn-sh-03"),
    "cn-gd2": ("cn-gd2-01",),
    "cn-gd": ("cn-gd-02",),
    "cn-guiyang1": ("cn-guiyang1-01",),
    "hk": ("hk-02", "hk-03"),
    "tw-tp": ("tw-tp-01",),
    "sg": ("sg-01", "sg-02"),
    "jpn-tky": ("jpn-tky-01",),
    "kr-seoul": ("kr-seoul-01",),
    "th-bkk": ("th-bkk-02",),
    "idn-jakarta": ("idn-jakarta-01",),
    "vn-sng": ("vn-sng-01",),
    "ph-mnl": ("ph-mnl-01",),
    "ind-mumbai": ("ind-mumbai-01",),
    "pk-khi": ("pk-khi-01",),
    "us-den": ("us-den-01",),
    "us-ca": ("us-ca-01",),
    "us-ws": ("us-ws-01",),
    "bra-saopaulo": ("bra-saopaulo-01",),
    "rus-mosc": ("rus-mosc-01", "rus-mosc-02"),
    "ge-fra": ("ge-fra-01",),
    "uk-london": ("uk-london-01",),
    "uae-dubai": ("uae-dubai-01",),
    "afr-nigeria": ("afr-nigeria-01",),
    "uz-tas": ("uz-tas-01",),
    "kz-ala": ("kz-ala-01",),
    "mx-mex": ("mx-mex-01",),
}
REGIONS = tuple(REGION_ZONES)
ZONES = tuple(zone for zones in REGION_ZONES.values() for zone in zones)


# ---- GPU types ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuSpec:
    """One UHost GpuType: its memory and compute capability, and which zones sell it.

    zones: the zones a UCloud page says sell it; () = documented as sold nowhere (retired);
    None = no source lists its zones (config accepts it with a warning).
    memory_gib / capability: None where no source gives them (the fit check then warns, and
    the stack config refuses `quantization: fp8`).
    capability_source: the row of NVIDIA's CUDA GPU Compute Capability table
    (https://developer.nvidia.com/cuda-gpus) the capability is read from, or why it is inferred.
    """

    name: str
    memory_gib: float | None
    capability: tuple[int, int] | None
    zones: tuple[str, ...] | None
    source: str
    capability_source: str = "unknown: the type names no NVIDIA product"


# The names: UHost's GpuType enum, API uhost-api/create_uhost_instance.md (GpuType row), in its
# order. AddUK8SUHostNode's own doc (API uk8s-api/add_uk8s_uhost_node.md, SDK uk8s/client.py)
# still lists only K80, P40, V100: the review found that list stale, and UK8S-doc
# administercluster/gpu-node.md creates nodes of every G type the console offers.
# Zones: GPU-doc type.md ("可选可用区"), letters mapped to ids through API summary/regionlist.md.
# Memory: GPU-doc type.md "显存容量" row (P40 24GB, V100 16GB, T4/T4S 16GB, V100S 32GB, A100 80GB)
# and GPU-doc advantage.md (K80 12G); the rest from NVIDIA's product pages as noted.
# Capability: NVIDIA's CUDA GPU Compute Capability table, https://developer.nvidia.com/cuda-gpus
# (Kepler GK210 3.7, Pascal 6.1, Volta 7.0, Turing 7.5, Ampere GA100 8.0 / GA102 8.6, Ada 8.9,
# Hopper 9.0): each type names its row in capability_source; a type the table does not list by
# name (UCloud's variants, export boards) takes its chip's row and says so.
_NVIDIA = "developer.nvidia.com/cuda-gpus: "
GPU_SPECS: dict[str, GpuSpec] = {
    spec.name: spec
    for spec in (
        GpuSpec(
            "K80",
            12,
            (3, 7),
            None,
            "GPU-doc advantage.md (显存12G); NVIDIA Tesla K80; zones undocumented",
            capability_source=_NVIDIA + "Tesla K80, 3.7",
        ),
        GpuSpec(
            "P40",
            24,
            (6, 1),
            ("cn-bj2-02", "cn-sh2-02"),
            "GPU-doc type.md (P40: 华东(上海2)可用区B, 华北(北京2)B; 24GB; Pascal)",
            capability_source=_NVIDIA + "Tesla P40, 6.1",
        ),
        GpuSpec(
            "V100",
            16,
            (7, 0),
            (),
            "GPU-doc type.md (V100(售罄)... 已下线: retired; 16GB)",
            capability_source=_NVIDIA + "Tesla V100, 7.0",
        ),
        GpuSpec(
            "T4",
            16,
            (7, 5),
            ("cn-bj2-05",),
            "GPU-doc type.md (T4: 华北(北京2)可用区E only; 16GB; Turing)",
            capability_source=_NVIDIA + "Tesla T4, 7.5",
        ),
        GpuSpec(
            "T4A",
            None,
            None,
            None,
            "unconfirmed: in the GpuType enum only; no page gives its memory or zones",
        ),
        GpuSpec(
            "T4S",
            16,
            (7, 5),
            ("cn-bj2-02", "cn-gd-02", "cn-bj2-05"),
            "GPU-doc type.md (T4S: 北京2 B, 广州 B, 北京2 E; Tesla T4/T4S 16GB, Turing)",
            capability_source="inferred: a Tesla T4 board (GPU-doc type.md); "
            + _NVIDIA
            + "Tesla T4, 7.5",
        ),
        GpuSpec(
            "2080Ti",
            11,
            (7, 5),
            None,
            "NVIDIA GeForce RTX 2080 Ti (11 GB, Turing); zones undocumented",
            capability_source=_NVIDIA + "GeForce RTX 2080 Ti, 7.5",
        ),
        GpuSpec("2080Ti-4C", None, None, None, "unconfirmed: enum only"),
        GpuSpec(
            "1080Ti",
            11,
            (6, 1),
            None,
            "NVIDIA GeForce GTX 1080 Ti (11 GB, Pascal); zones undocumented",
            capability_source=_NVIDIA + "GeForce GTX 1080 Ti, 6.1",
        ),
        GpuSpec("T4/4", None, None, None, "unconfirmed: enum only (a share of a T4?)"),
        GpuSpec(
            "V100S",
            32,
            (7, 0),
            ("cn-bj2-02", "cn-gd-02", "cn-sh2-01"),
            "GPU-doc type.md (V100S: 北京2 B, 广州 B, 上海2 A; 32GB; Volta)",
            capability_source="inferred: a Volta GV100 board; " + _NVIDIA + "Tesla V100, 7.0",
        ),
        GpuSpec(
            "2080",
            8,
            (7, 5),
            None,
            "NVIDIA GeForce RTX 2080 (8 GB, Turing); zones undocumented",
            capability_source=_NVIDIA + "GeForce RTX 2080, 7.5",
        ),
        GpuSpec("2080TiS", None, None, None, "unconfirmed: enum only"),
        GpuSpec("2080TiPro", None, None, None, "unconfirmed: enum only"),
        GpuSpec(
            "3090",
            24,
            (8, 6),
            None,
            "NVIDIA GeForce RTX 3090 (24 GB, GA102); zones undocumented",
            capability_source=_NVIDIA + "GeForce RTX 3090, 8.6",
        ),
        GpuSpec(
            "4090",
            24,
            (8, 9),
            None,
            "NVIDIA GeForce RTX 4090 (24 GB, Ada); zones undocumented",
            capability_source=_NVIDIA + "GeForce RTX 4090, 8.9",
        ),
        GpuSpec("4090Pro", None, None, None, "unconfirmed: enum only"),
        GpuSpec(
            "4090_48G",
            48,
            (8, 9),
            None,
            "unconfirmed: 48 GB from the enum name only; "
            "AD102 (Ada) as the 4090; zones undocumented",
            capability_source="inferred: an AD102 board as the 4090; "
            + _NVIDIA
            + "GeForce RTX 4090, 8.9",
        ),
        GpuSpec(
            "A100",
            80,
            (8, 0),
            ("cn-wlcb-01",),
            "GPU-doc type.md (A100: 华北(乌兰察布)可用区A; 80GB; Ampere)",
            capability_source=_NVIDIA + "NVIDIA A100, 8.0",
        ),
        GpuSpec(
            "A800",
            80,
            (8, 0),
            None,
            "unconfirmed: NVIDIA sells A800 with 40 or 80 GB; "
            "GPU-doc user_guide/A800_nccl.md installs nvidia-fabricmanager (NVSwitch, i.e. "
            "the SXM4 80GB board), so 80 is inferred; zones undocumented",
            capability_source="inferred: a GA100 board (the A100's export variant); "
            + _NVIDIA
            + "NVIDIA A100, 8.0",
        ),
        GpuSpec(
            "H20",
            96,
            (9, 0),
            None,
            "unconfirmed: 96 GB HBM3 as widely reported (no NVIDIA "
            "datasheet is public); Hopper 9.0; zones undocumented",
            capability_source="inferred: a Hopper GH100 board (an export variant); "
            + _NVIDIA
            + "NVIDIA H100, 9.0",
        ),
    )
}
GPU_TYPES = tuple(GPU_SPECS)
# The "高性价比" (cost-effective) cards are sold in these zones (UK8S-doc
# administercluster/gpu-node.md, "高性价比显卡支持可用区": 乌兰察布 A, 上海2 B, 北京二B) and
# need the "…-高性价比" node image. Which GpuType enum values are "高性价比显卡3/4/5/6" no
# source says, so this list is kept for reference and applied to no type (unconfirmed).
HIGH_VALUE_GPU_ZONES = ("cn-wlcb-01", "cn-sh2-02", "cn-bj2-02")
# GPUs per G host: GPU-doc type.md ("GPU可选: 1-4颗" for P40/V100/T4); 8-card hosts exist
# (UK8S-doc gpu-node.md "8卡高性价比显卡6/.../A800"). Per type and zone the console decides.
GPUS_PER_NODE = (1, 2, 4, 8)
# What `dtype=auto` picks (image/llmserve/models.py pick_dtype): bfloat16 from this capability
# on (NVIDIA: BF16 tensor cores arrive with Ampere, compute capability 8.0), float16 below.
BF16_MIN_CAPABILITY = (8, 0)
# FP8 (e4m3) tensor cores, what the server's LLMSERVE_QUANTIZATION=fp8 runs on: Ada (8.9) and
# Hopper (9.0) on; NVIDIA's CUDA programming guide lists FP8 MMA from compute capability 8.9
# (image/llmserve/quantization.py FP8_MIN_CAPABILITY refuses the same GPUs at start).
FP8_MIN_CAPABILITY = (8, 9)


# ---- machine types, charge types, disks --------------------------------------------------------
# Node (AddUK8SUHostNode) machine types: API uk8s-api/add_uk8s_uhost_node.md lists N, C, G, O, OS;
# UHost's CreateUHostInstance (API uhost-api/create_uhost_instance.md) adds OM, OPRO (and OMEM,
# OPROG, which UK8S does not mention). We keep N, C, G, O, OS, OM, OPRO: OM and OPRO are
# unconfirmed for UK8S nodes (only the UHost enum and disk_type.md name them).
NODE_MACHINE_TYPES = ("N", "C", "G", "O", "OS", "OM", "OPRO")
# Masters: CreateUK8SClusterV2 MasterMachineType "如[N, C, O, OS]" (API
# uk8s-api/create_uk8s_cluster_v2.md); "集群的 Master 节点暂不支持 GPU 机型" (UK8S-doc
# administercluster/gpu-node.md, 使用说明 2): never G. OM and OPRO as for nodes (unconfirmed).
# OMAX and O.BM appear in no UK8S source.
MASTER_MACHINE_TYPES = ("N", "C", "O", "OS", "OM", "OPRO")
GPU_MACHINE_TYPE = "G"
# Billing: CreateUK8SClusterV2 ChargeType Year|Month|Dynamic (API create_uk8s_cluster_v2.md);
# AddUK8SUHostNode adds Postpay (API add_uk8s_uhost_node.md); AllocateEIP Year|Month|Dynamic
# (API unet-api/allocate_eip.md); CreateUFSVolume Year|Month|Dynamic|Trial (API
# ufs-api/create_ufs_volume.md; Trial needs a permission, so we do not offer it).
CHARGE_TYPES = ("Dynamic", "Month", "Year")
NODE_CHARGE_TYPES = (*CHARGE_TYPES, "Postpay")
# Boot disks: API uhost-api/disk_type.md (枚举值说明: system disks can be LOCAL_NORMAL, LOCAL_SSD,
# CLOUD_SSD, CLOUD_RSSD; CLOUD_NORMAL and CLOUD_ESSD are data-only) and its 机型与磁盘关系 table.
BOOT_DISK_TYPES = ("CLOUD_SSD", "CLOUD_RSSD", "LOCAL_NORMAL", "LOCAL_SSD")
# The O ("快杰") family boots only from RSSD: disk_type.md (O and OPRO: "RSSD云盘 + ..." only)
# and TF ucloud/resource_ucloud_uk8s_cluster.go:484-509 / resource_ucloud_uk8s_node.go:418-441
# (any host type containing "o" must use cloud_rssd). OS and OM are O-family per TF's rule
# (disk_type.md does not list them).
RSSD_ONLY_FAMILIES = ("O", "OS", "OM", "OPRO")
# Every other family boots from CLOUD_SSD, the documented default ("默认为SSD云盘": API
# add_uk8s_uhost_node.md BootDiskType, create_uk8s_cluster_v2.md MasterBootDiskType); disk_type.md
# lists CLOUD_SSD system disks for N, C and G.
DEFAULT_BOOT_DISK_TYPE = "CLOUD_SSD"


# ---- ranges and steps --------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    """Whole numbers from low to high (both allowed) in steps of `step` counted from 0."""

    low: int
    high: int
    step: int = 1
    source: str = ""

    def allows(self, value: int) -> bool:
        return self.low <= value <= self.high and value % self.step == 0

    def describe(self) -> str:
        steps = f" in steps of {self.step}" if self.step > 1 else ""
        return f"a whole number from {self.low} to {self.high}{steps}"


# CPU: AddUK8SUHostNode "CPU ... 2-64", CreateUK8SClusterV2 "MasterCPU ... 2-64" (API docs, SDK);
# an even count: TF ucloud/types.go:148-150 and :198-200 refuse odd core counts above one.
NODE_CPU = Range(2, 64, 2, "API add_uk8s_uhost_node.md CPU 2-64; TF types.go:198-200 even")
MASTER_CPU = Range(2, 64, 2, "API create_uk8s_cluster_v2.md MasterCPU 2-64; TF types.go even")
# Memory in MB: "[4096, 262144], 取值为1024的倍数" (both docs, SDK).
NODE_MEMORY_MB = Range(4096, 262144, 1024, "API add_uk8s_uhost_node.md Mem")
MASTER_MEMORY_MB = Range(4096, 262144, 1024, "API create_uk8s_cluster_v2.md MasterMem")
# Nodes per AddUK8SUHostNode call: "Count ... [1,50]" (API, SDK). A group of 0 is no group: the
# stack makes no node group when gpuNodeCount is 0.
NODE_COUNT = Range(1, 50, source="API add_uk8s_uhost_node.md Count [1,50]")
GPU_NODE_COUNT = Range(0, 50, source="NODE_COUNT, plus 0 = no GPU nodes (our choice)")
# Data disk: "DataDiskSize ... [20, 1000]" (API add_uk8s_uhost_node.md).
DATA_DISK_GB = Range(20, 1000, source="API add_uk8s_uhost_node.md DataDiskSize")
# Labels and taints per node: "最多5组" / "最多支持五组" (API add_uk8s_uhost_node.md).
MAX_NODE_LABELS = 5
MAX_NODE_TAINTS = 5
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")  # Kubernetes' three effects
# UFS sizes in GB: CreateUFSVolume "必须为100的整数倍, 容量型Size最小为500GB, 性能型...最小为100GB"
# (API ufs-api/create_ufs_volume.md); maxima from SDK ufs/client.py DescribeUFSVolumePrice
# ("容量型 ... 最大不超过100TB", "性能型 ... 最大不超过20TB"). We read TB as 1,000 GB (the
# smaller reading; 1,024 is unconfirmed).
UFS_STORAGE_TYPES = ("Basic", "Advanced")
UFS_SIZE_GB = {
    "Basic": Range(500, 100_000, 100, "API create_ufs_volume.md; SDK DescribeUFSVolumePrice"),
    "Advanced": Range(100, 20_000, 100, "API create_ufs_volume.md; SDK DescribeUFSVolumePrice"),
}
UFS_PROTOCOL_TYPES = ("NFSv4",)  # "目前仅支持NFSv4" (API create_ufs_volume.md)
# Growing a volume: ExtendUFSVolume's Size is the new total in GB (SDK ufs/client.py
# extend_ufs_volume; API ufs-api/extend_ufs_volume.md, read 2026-12-01): "最大不超过20T,
# 香港容量型必须为100的整数倍, Size最小为500GB, 北京, 上海, 广州的容量型必须为1024的整数倍,
# Size最小为1024GB。性能型文件系统Size最小为100GB". The cities are mapped to every region
# summary/regionlist.md names after them (北京 cn-bj1, cn-bj2; 上海 cn-sh2, 金融云 cn-sh; 广州
# cn-gd, cn-gd2); which of them sell UFS is not documented. Elsewhere the doc gives no step: the
# create step (100 GB) is assumed. 20T is read as 20,480 GB, the larger reading (unconfirmed).
UFS_EXTEND_STEP_GB = 1024
UFS_EXTEND_STEP_REGIONS = ("cn-bj1", "cn-bj2", "cn-sh2", "cn-sh", "cn-gd", "cn-gd2")
UFS_EXTEND_MAX_GB = 20 * 1024
# EIP bandwidth in Mbps at AllocateEIP: "流量计费[1-300], 带宽计费[1-10000]" (API
# unet-api/allocate_eip.md); ModifyEIPBandwidth (an in-place change) 1-800 (review: SDK, TF).
EIP_BANDWIDTH_MBPS = {
    "Bandwidth": Range(1, 10000, source="API allocate_eip.md"),
    "Traffic": Range(1, 300, source="API allocate_eip.md"),
}
# ...and when changing it in place: ModifyEIPBandwidth "流量计费[1-200],带宽计费[1-800]" (SDK
# unet/client.py modify_eip_bandwidth; API unet-api/modify_eip_bandwidth.md). The Terraform
# provider allows 0-800 (resource_ucloud_eip.go:30) and documents 1-200 / 1-800.
EIP_MODIFY_BANDWIDTH_MBPS = {
    "Bandwidth": Range(1, 800, source="API modify_eip_bandwidth.md"),
    "Traffic": Range(1, 200, source="API modify_eip_bandwidth.md"),
}
EIP_INTERNET_TYPES = {"BGP": "Bgp", "International": "International"}  # OperatorName (SDK, TF)


# ---- CIDRs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrivateRange:
    """A private IPv4 block and the prefix lengths UCloud accepts inside it."""

    network: str
    min_prefix: int
    max_prefix: int


# VPC and subnet CIDRs: TF ucloud/types.go:48-85 (parseUCloudCidrBlock, used by validateCIDRBlock
# for ucloud_vpc.cidr_blocks and ucloud_subnet.cidr_block): 10.0.0.0/8 with /8-/29,
# 172.16.0.0/12 with /12-/29, 192.168.0.0/16 with /16-/29, and no host bits set.
VPC_RANGES = (
    PrivateRange("10.0.0.0/8", 8, 29),
    PrivateRange("172.16.0.0/12", 12, 29),
    PrivateRange("192.168.0.0/16", 16, 29),
)
# Subnets: the same ranges, but no shorter than /16 (our own choice, kept from the previous
# provider: UK8S puts nodes and pods in the subnet and the console offers no shorter; unconfirmed).
SUBNET_MIN_PREFIX = 16
# Service CIDR: private, outside the VPC (API create_uk8s_cluster_v2.md "不能与集群所属VPC网段重叠";
# example 172.17.0.0/16). Prefix /12-/24 is our own choice (kept from the previous provider):
# no source gives its limits (unconfirmed).
SERVICE_CIDR_PREFIX = (12, 24)


# ---- small functions ---------------------------------------------------------------------------
def zones_of(region: str) -> tuple[str, ...]:
    """The region's zones; () for a region UCloud does not list."""
    return REGION_ZONES.get(region, ())


def region_of_zone(zone: str) -> str | None:
    """The region a published zone belongs to; None for an unknown zone."""
    return next((r for r, zones in REGION_ZONES.items() if zone in zones), None)


def gpu_zones(gpu_type: str) -> tuple[str, ...] | None:
    """Zones documented to sell the type; None where no source lists any."""
    spec = GPU_SPECS.get(gpu_type)
    return spec.zones if spec else ()


def gpu_memory_gib(gpu_type: str) -> float | None:
    """Memory of one GPU of the type in GiB (NVIDIA's "GB" of HBM/GDDR); None if unknown."""
    spec = GPU_SPECS.get(gpu_type)
    return spec.memory_gib if spec else None


def gpu_capability(gpu_type: str) -> tuple[int, int] | None:
    """CUDA compute capability of the type; None if unknown."""
    spec = GPU_SPECS.get(gpu_type)
    return spec.capability if spec else None


def auto_dtype(capability: tuple[int, int] | None) -> str:
    """What the server's `dtype=auto` picks on a GPU of this capability (None: no GPU, CPU)."""
    if capability is None:
        return "float32"
    return "bfloat16" if capability >= BF16_MIN_CAPABILITY else "float16"


def boot_disk_type_for(machine_type: str) -> str:
    """The boot disk a host of this machine family must (O family) or should boot from."""
    return "CLOUD_RSSD" if machine_type in RSSD_ONLY_FAMILIES else DEFAULT_BOOT_DISK_TYPE


def boot_disk_types_for(machine_type: str) -> tuple[str, ...]:
    """Every boot disk type the family accepts (disk_type.md; TF's O-family rule)."""
    if machine_type in RSSD_ONLY_FAMILIES:
        return ("CLOUD_RSSD",)
    return tuple(t for t in BOOT_DISK_TYPES if t != "CLOUD_RSSD")


def ufs_size_range(storage_type: str) -> Range:
    """Allowed create sizes of a UFS volume of this class (Basic's when the class is unknown)."""
    return UFS_SIZE_GB.get(storage_type, UFS_SIZE_GB["Basic"])


def ufs_grow_range(region: str, storage_type: str) -> Range:
    """Sizes a volume of this class in this region can be grown to (ExtendUFSVolume)."""
    if storage_type == "Basic" and region in UFS_EXTEND_STEP_REGIONS:
        step = UFS_EXTEND_STEP_GB
        return Range(step, UFS_EXTEND_MAX_GB, step, "API ufs-api/extend_ufs_volume.md")
    create = ufs_size_range(storage_type)
    return Range(create.low, UFS_EXTEND_MAX_GB, create.step, "API ufs-api/extend_ufs_volume.md")


def ufs_size_allowed(region: str, storage_type: str, size: int) -> bool:
    """What a stack may ask for without knowing whether the volume exists: a size a new volume
    can be created with, or one an existing volume can be grown to."""
    return ufs_size_range(storage_type).allows(size) or ufs_grow_range(region, storage_type).allows(
        size
    )


def private_range_of(cidr: str) -> PrivateRange | None:
    """The RFC 1918 block a CIDR lies in, or None (also for malformed or IPv6 CIDRs)."""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None
    for block in VPC_RANGES:
        outer = ipaddress.ip_network(block.network)
        if net.version == 4 and net.subnet_of(outer):  # type: ignore[arg-type]
            return block
    return None


def cidr_problem(cidr: str, min_prefix: int = 0, max_prefix: int = 32) -> str | None:
    """Why UCloud would refuse this VPC/subnet CIDR (None if it would not), within the extra
    prefix limits given: text that names what is allowed."""
    allowed = ", ".join(
        f"{b.network} with /{max(b.min_prefix, min_prefix)}-/{min(b.max_prefix, max_prefix)}"
        for b in VPC_RANGES
    )
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        return f"a private IPv4 CIDR without host bits: {allowed}"
    block = private_range_of(cidr)
    if block is None or not (
        max(block.min_prefix, min_prefix) <= net.prefixlen <= min(block.max_prefix, max_prefix)
    ):
        return f"a private IPv4 CIDR without host bits: {allowed}"
    return None

"""Read-only checks of a stack against the live account: region, zones, what each zone sells,
the Kubernetes version, the GPU node image. Every problem names the config key, the zone and
what is available instead.

Sources, ucloud-sdk-python3 0.11.150 (services/<svc>/client.py docstrings, schemas/apis.py,
schemas/models.py) and UCloudDoc-Team/api (API):
- GetRegion (uaccount): Regions[] of RegionInfo {Region, Zone, ...}, one entry per zone; the
  Terraform provider lists a region's zones the same way (ucloud/data_source_ucloud_zones.go:44-57).
- ProjectId: only GetUK8SVersions requires one (SDK uk8s/schemas/apis.py
  GetUK8SVersionsRequestSchema; every other action here has it optional). UCloudApi
  (components/ucloud/api.py) sends the stack's project, or for such actions the account's
  default (GetProjectList, IsDefault), exactly as for `pulumi up`.
- DescribeAvailableInstanceTypes (uhost; API uhost-api/describe_available_instance_types.md):
  per Zone, AvailableInstanceTypes[] {Zone, Name, MachineClass GPU|Normal, ParentType, Status
  Normal|Beta|Soldout|Hidden, MachineSizes[] {Gpu, Collection[] {Cpu, Memory[]}},
  Disks[] {BootDisk[] {Name}}}.
- GetUK8SVersions (uk8s; API uk8s-api/get_uk8s_versions.md): Kind (required, "Dedicated"),
  ProjectId (required) -> Data[] {K8sVersion, ContainerdVersion}.
- DescribeUK8SImage (uk8s; API uk8s-api/describe_uk8s_image.md): MachineType, GPUType ("MachineType
  为G时必须提供"), Zone -> ImageSet[] / CustomImageSet[] {ImageId, ImageName, NotSupportGPU,
  SupportedGPUTypes}.
Unconfirmed (no source says): that a GPU type's entry is the one whose Name is the GpuType value
(DescribeHostMachineTypeFamilies documents ParentType "G" for GPU types; the availability doc
only says "父机型"), and the unit of Collection.Memory (the doc says "内存规格" only; we accept a
match in MB or in GB).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.ucloud.errors import MissingProjectError
from components.ucloud.preflight.readonly import ReadOnlyApi
from components.ucloud.preflight.stack import HostGroup, StackPlan, key

ON_SALE = frozenset({"Normal", "Beta"})  # "可售|Normal、公测|Beta"
SOLD_OUT = "Soldout"  # "售罄|Soldout"; "隐藏|Hidden" counts as not sold
GPU_CLASS = "GPU"
UK8S_KIND = "Dedicated"  # GetUK8SVersions Kind: "可选值为[Dedicated]"
MB_PER_GB = 1024
# The SDK has no quota action for UHost, UK8S, UFS, EIP, VPC or NAT gateways: its only quota
# actions are UFile's (get_ufile_quota...) and a network interface's private IPs (vpc UNIQuotaInfo).
QUOTAS_NOT_CHECKED = (
    "quotas: the SDK (ucloud-sdk-python3) has no quota action for UHost, UK8S, UFS, EIP, "
    "VPC or NAT gateways"
)


def describe_error(error: BaseException) -> str:
    """UCloud's answer without anything from the request (keys never reach this text)."""
    code = getattr(error, "code", None)
    action = getattr(error, "action", None)
    message = getattr(error, "message", None)
    if isinstance(code, int):
        return f"{action or 'UCloud'} answered RetCode {code}: {message or ''}".rstrip(": ")
    return f"{type(error).__name__}: {error}"


@dataclass
class Findings:
    """Problems (fail the preflight), passed checks, and checks that could not run."""

    problems: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)
    # zone -> AvailableInstanceTypes, kept for the cost view's "other GPU types" line.
    offers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)


# ---- reading the account -------------------------------------------------------------------


def region_zones(api: ReadOnlyApi) -> dict[str, list[str]]:
    """Region -> its zones, as GetRegion lists them for this account."""
    regions: dict[str, list[str]] = {}
    for item in api.call("uaccount", "get_region", {}).get("Regions") or []:
        zones = regions.setdefault(str(item.get("Region") or ""), [])
        zone = str(item.get("Zone") or "")
        if zone and zone not in zones:
            zones.append(zone)
    return regions


def zone_offers(api: ReadOnlyApi, zone: str) -> list[dict[str, Any]]:
    response = api.call("uhost", "describe_available_instance_types", {"Zone": zone})
    offers = response.get("AvailableInstanceTypes") or []
    return [o for o in offers if o.get("Zone") in (None, "", zone)]


def k8s_versions(api: ReadOnlyApi) -> list[str]:
    response = api.call("uk8s", "get_uk8s_versions", {"Kind": UK8S_KIND})
    return [str(d.get("K8sVersion")) for d in response.get("Data") or [] if d.get("K8sVersion")]


def node_images(api: ReadOnlyApi, zone: str, machine_type: str, gpu_type: str) -> dict[str, Any]:
    return api.call(
        "uk8s",
        "describe_uk8s_image",
        {"Zone": zone, "MachineType": machine_type, "GPUType": gpu_type},
    )


# ---- matching ------------------------------------------------------------------------------


def is_gpu_offer(offer: Mapping[str, Any], gpu_machine_type: str) -> bool:
    return offer.get("MachineClass") == GPU_CLASS or offer.get("ParentType") == gpu_machine_type


def find_offer(offers: Iterable[Mapping[str, Any]], group: HostGroup) -> Mapping[str, Any] | None:
    for offer in offers:
        if group.gpu_type is not None:
            if offer.get("Name") == group.gpu_type and is_gpu_offer(offer, group.machine_type):
                return offer
        elif offer.get("Name") == group.machine_type and offer.get("MachineClass") != GPU_CLASS:
            return offer
    return None


def names_on_sale(
    offers: Iterable[Mapping[str, Any]], gpu: bool, gpu_machine_type: str
) -> list[str]:
    return sorted(
        {
            str(o.get("Name"))
            for o in offers
            if o.get("Status") in ON_SALE and is_gpu_offer(o, gpu_machine_type) == gpu
        }
    )


def memory_matches(memory_mb: int, offered: Iterable[int]) -> bool:
    """Collection.Memory's unit is undocumented: accept the value in MB or in GB."""
    return any(m == memory_mb or m * MB_PER_GB == memory_mb for m in offered)


def as_mb(values: Iterable[int]) -> list[int]:
    """Show offered memory in MB, the unit of every config key (GB values are below 1024)."""
    return sorted({v * MB_PER_GB if v < MB_PER_GB else v for v in values})


def boot_disks(offer: Mapping[str, Any]) -> list[str]:
    return sorted(
        {
            str(disk.get("Name"))
            for family in offer.get("Disks") or []
            for disk in family.get("BootDisk") or []
            if disk.get("Name")
        }
    )


def _joined(items: Iterable[Any]) -> str:
    text = ", ".join(str(i) for i in items)
    return text or "none"


# ---- the checks ----------------------------------------------------------------------------


def sizes_problems(group: HostGroup, offer: Mapping[str, Any], where: str) -> list[str]:
    sizes = offer.get("MachineSizes") or []
    if not sizes:
        return []
    wanted_gpus = group.gpus if group.gpu_type else 0
    size = next((s for s in sizes if int(s.get("Gpu") or 0) == wanted_gpus), None)
    label = group.gpu_type or group.machine_type
    if size is None:
        offered = sorted({int(s.get("Gpu") or 0) for s in sizes})
        name = group.gpus_key or group.machine_key
        return [
            f"{key(name)} = {wanted_gpus}: {label} in {where} comes with {_joined(offered)} "
            "GPU(s) per host"
        ]
    collection = size.get("Collection") or []
    cpu_sizes = [c for c in collection if int(c.get("Cpu") or 0) == group.cpu]
    if not cpu_sizes:
        offered = sorted({int(c.get("Cpu") or 0) for c in collection})
        return [
            f"{key(group.cpu_key)} = {group.cpu}: {label} in {where} is sold with "
            f"{_joined(offered)} CPUs"
        ]
    memory = [int(m) for c in cpu_sizes for m in c.get("Memory") or []]
    if not memory_matches(group.memory_mb, memory):
        return [
            f"{key(group.memory_key)} = {group.memory_mb}: {label} with {group.cpu} CPUs in "
            f"{where} is sold with {_joined(as_mb(memory))} MB"
        ]
    return []


def check_host_group(
    group: HostGroup,
    plan: StackPlan,
    offers_of: Callable[[str], list[dict[str, Any]]],
    region_zone_list: list[str],
) -> tuple[list[str], str | None]:
    """Problems of one group of hosts in its zone, and a pass line when there are none."""
    offers = offers_of(group.zone)
    offer = find_offer(offers, group)
    is_gpu = group.gpu_type is not None
    label = group.gpu_type if is_gpu else group.machine_type
    where = f"zone {group.zone}"
    value = f"{key(group.machine_key)} = {label!r}"

    def zones_on_sale() -> list[str]:
        return [
            z
            for z in region_zone_list
            if (o := find_offer(offers_of(z), group)) is not None and o.get("Status") in ON_SALE
        ]

    if offer is None or offer.get("Status") not in ON_SALE | {SOLD_OUT}:
        sold_here = names_on_sale(offers, is_gpu, plan.gpu_machine_type)
        kind = "GPU types" if is_gpu else "machine types"
        return [
            f"{value}: not sold in {where} (the {group.role}s' zone); {kind} sold there: "
            f"{_joined(sold_here)}; zones of {plan.region} that sell {label}: "
            f"{_joined(zones_on_sale())}"
        ], None
    if offer.get("Status") == SOLD_OUT:
        return [
            f"{value}: sold out in {where} (Status {SOLD_OUT}, the {group.role}s' zone); zones "
            f"of {plan.region} where {label} is on sale: {_joined(zones_on_sale())}"
        ], None
    problems = sizes_problems(group, offer, where)
    disks = boot_disks(offer)
    if disks and group.boot_disk_type not in disks:
        problems.append(
            f"{value}: {group.role}s boot from {group.boot_disk_type} (the program's choice), "
            f"which {label} in {where} does not offer; boot disks offered: {_joined(disks)}"
        )
    if problems:
        return problems, None
    status = "" if offer.get("Status") == "Normal" else f" (Status {offer.get('Status')})"
    return [], (
        f"{group.count} {group.role}(s) {group.shape}, boot {group.boot_disk_type}: sold in "
        f"{group.zone}{status}"
    )


def version_offered(wanted: str, offered: Iterable[str]) -> bool:
    """ "1.30" matches any 1.30.x UK8S offers; "1.30.3" must be offered exactly."""
    return any(v == wanted or v.startswith(wanted + ".") for v in offered)


def check_version(api: ReadOnlyApi, plan: StackPlan, findings: Findings) -> None:
    try:
        offered = k8s_versions(api)
    except MissingProjectError:
        # `pulumi up` would fail the same way: CreateUK8SClusterV2 requires a ProjectId too.
        findings.problem(
            f"{key('projectId')} is not set and the account names no default project "
            "(GetProjectList), but GetUK8SVersions and CreateUK8SClusterV2 need one: set "
            f"{key('projectId')} or UCLOUD_PROJECT_ID"
        )
        return
    except Exception as error:
        findings.problem(
            f"{key('kubernetesVersion')}: could not be checked: {describe_error(error)}"
        )
        return
    if version_offered(plan.kubernetes_version, offered):
        matches = [v for v in offered if version_offered(plan.kubernetes_version, [v])]
        findings.passed.append(
            f"kubernetesVersion {plan.kubernetes_version}: offered by UK8S ({_joined(matches)})"
        )
    else:
        findings.problem(
            f"{key('kubernetesVersion')} = {plan.kubernetes_version!r}: UK8S does not offer it "
            f"in {plan.region}; versions offered: {_joined(offered)}"
        )


def check_images(api: ReadOnlyApi, plan: StackPlan, findings: Findings) -> None:
    for zone in dict.fromkeys(g.zone for g in plan.gpu_nodes):
        try:
            response = node_images(api, zone, plan.gpu_machine_type, plan.gpu_type)
        except Exception as error:
            findings.problem(
                f"{key('gpuType')} = {plan.gpu_type!r}: node image in zone {zone} could not be "
                f"checked: {describe_error(error)}"
            )
            continue
        stock = list(response.get("ImageSet") or [])
        custom = list(response.get("CustomImageSet") or [])
        if plan.gpu_node_image_id:
            ids = [str(i.get("ImageId")) for i in stock + custom]
            if plan.gpu_node_image_id in ids:
                findings.passed.append(f"gpuNodeImageId {plan.gpu_node_image_id}: usable in {zone}")
            else:
                findings.problem(
                    f"{key('gpuNodeImageId')} = {plan.gpu_node_image_id!r}: not a UK8S node image "
                    f"for {plan.gpu_type} in zone {zone}; images: {_joined(ids)}"
                )
            continue
        usable = [
            i
            for i in stock
            if not i.get("NotSupportGPU")
            and (not i.get("SupportedGPUTypes") or plan.gpu_type in i["SupportedGPUTypes"])
        ]
        if usable:
            first = usable[0]
            findings.passed.append(
                f"node image for {plan.gpu_type} in {zone}: {first.get('ImageId')} "
                f"({first.get('ImageName')})"
            )
        else:
            names = [f"{i.get('ImageId')} ({i.get('ImageName')})" for i in stock]
            findings.problem(
                f"{key('gpuType')} = {plan.gpu_type!r}: UK8S has no GPU node image for it in zone "
                f"{zone} (DescribeUK8SImage); images listed: {_joined(names)}"
            )


def check(api: ReadOnlyApi, plan: StackPlan) -> Findings:
    """Every read-only check, each problem naming its config key."""
    findings = Findings()
    try:
        regions = region_zones(api)
    except Exception as error:
        findings.problem(
            f"could not read the account's regions (GetRegion): {describe_error(error)}"
        )
        return findings
    if plan.region not in regions:
        findings.problem(
            f"{key('region')} = {plan.region!r}: not a region of this account; regions: "
            f"{_joined(sorted(r for r in regions if r))}"
        )
        return findings
    valid = regions[plan.region]
    bad = [z for z in plan.zones if z not in valid]
    if bad:
        findings.problem(
            f"{key('zones')} = {list(plan.zones)!r}: {_joined(bad)} not open to this account "
            f"in region {plan.region} (GetRegion); its zones there: {_joined(valid)}"
        )
    else:
        findings.passed.append(f"region {plan.region}, zones {_joined(plan.zones)}")

    def offers_of(zone: str) -> list[dict[str, Any]]:
        if zone not in findings.offers:
            try:
                findings.offers[zone] = zone_offers(api, zone)
            except Exception as error:
                findings.problem(
                    f"could not read what zone {zone} sells (DescribeAvailableInstanceTypes): "
                    f"{describe_error(error)}"
                )
                findings.offers[zone] = []
        return findings.offers[zone]

    for group in plan.hosts:
        if group.zone not in valid:
            continue
        problems, passed = check_host_group(group, plan, offers_of, valid)
        for text in problems:
            findings.problem(text)
        if passed:
            findings.passed.append(passed)
    check_version(api, plan, findings)
    if all(g.zone in valid for g in plan.gpu_nodes):
        check_images(api, plan, findings)
    findings.not_checked.append(QUOTAS_NOT_CHECKED)
    return findings

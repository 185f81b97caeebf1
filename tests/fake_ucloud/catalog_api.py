"""Fake read-only catalog actions: regions, what each zone sells, and the price actions.
Projects are server.py's (GetProjectList), UK8S versions and node images uk8s_api.py's.
Requests and responses follow ucloud-sdk-python3 0.11.150's schemas (services/*/schemas/apis.py,
models.py) and UCloudDoc-Team/api's pages of each action.

What the fake sells where: regions and zones from API summary/regionlist.md; GPU types and their
zones from UCloudDoc-Team/gpu type.md (P40, T4, T4S, V100S, A100; "GPU可选: 1-4颗", "CPU可选:
4核-32核", "内存可选: 8G-128G" for P40/T4). A800, H20 and 4090 are sold in cn-bj2's zones here:
the fake's own choice, no source lists their zones. Prices are the fake's own numbers (no public
price list was used); units follow the docs: 元 for UHost and EIP, 分 for UFS.
Tests change the catalog through `catalog_of(fake.cloud)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tests.fake_ucloud.cloud import FakeCloud, Handler
from tests.fake_ucloud.protocol import ApiError

MISSING = 160  # the fake's own choice, as protocol.MISSING_PARAM
BAD_PARAM = 230  # the fake's own choice: "parameter out of range"
CHARGE_TYPES = ("Year", "Month", "Dynamic")
HOURS_PER_MONTH = Decimal(730)
MONTH_DISCOUNT = Decimal("0.7")  # the fake's own: monthly = hourly x 730 x 0.7
YEAR_MONTHS = Decimal(10)  # the fake's own: a year costs ten months


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@dataclass
class Offer:
    """One AvailableInstanceTypes entry: a machine type, or a GPU type (ParentType G)."""

    name: str
    zone: str
    gpu: bool
    cpus: tuple[int, ...]
    memory_gb_per_cpu: tuple[int, ...]
    gpus: tuple[int, ...] = (0,)
    boot_disks: tuple[str, ...] = ("CLOUD_SSD",)
    status: str = "Normal"
    graphics_memory_gb: int = 0

    def view(self) -> dict[str, Any]:
        sizes = [
            {
                "Gpu": g,
                "Collection": [
                    {"Cpu": c, "Memory": [c * r for r in self.memory_gb_per_cpu]} for c in self.cpus
                ],
            }
            for g in self.gpus
        ]
        return {
            "Zone": self.zone,
            "Name": self.name,
            "InstanceType": "uhost",
            "MachineClass": "GPU" if self.gpu else "Normal",
            "ParentType": "G" if self.gpu else "",
            "Status": self.status,
            "MachineSizes": sizes,
            "Disks": [
                {
                    "Name": "cloudDisk",
                    "BootDisk": [
                        {"Name": d, "MaximalSize": 500, "InstantResize": True, "Features": []}
                        for d in self.boot_disks
                    ],
                    "DataDisk": [{"Name": "CLOUD_SSD", "MinimalSize": 20, "MaximalSize": 32000}],
                }
            ],
            "GraphicsMemory": {"Value": self.graphics_memory_gb, "Rate": 0},
            "Description": self.name,
        }


@dataclass
class PriceBook:
    """The fake's hourly list prices; Month and Year derive from them."""

    cpu_hour: Decimal = Decimal("0.05")
    memory_gb_hour: Decimal = Decimal("0.02")
    boot_disk_gb_hour: Decimal = Decimal("0.001")
    gpu_hour: dict[str, Decimal] = field(
        default_factory=lambda: {
            "P40": Decimal("3.10"),
            "T4": Decimal("2.60"),
            "T4S": Decimal("2.20"),
            "V100S": Decimal("6.50"),
            "A100": Decimal("17.00"),
            "A800": Decimal("19.50"),
            "H20": Decimal("14.00"),
            "4090": Decimal("4.40"),
        }
    )
    ufs_gb_hour_fen: dict[str, Decimal] = field(
        default_factory=lambda: {"Basic": Decimal("0.04"), "Advanced": Decimal("0.15")}
    )
    eip_mbps_hour: Decimal = Decimal("0.08")

    @staticmethod
    def for_charge(hourly: Decimal, charge_type: str, quantity: int) -> Decimal:
        if charge_type == "Dynamic":
            return _cents(hourly)
        month = _cents(hourly * HOURS_PER_MONTH * MONTH_DISCOUNT)
        unit = month if charge_type == "Month" else _cents(month * YEAR_MONTHS)
        return unit * max(quantity, 1)

    def uhost_hourly(
        self, cpu: int, memory_mb: int, gpu_type: str | None, gpus: int, boot_gb: int
    ) -> Decimal:
        gpu = self.gpu_hour.get(gpu_type or "", Decimal("5.00")) * gpus if gpu_type else 0
        return (
            self.cpu_hour * cpu
            + self.memory_gb_hour * (Decimal(memory_mb) / 1024)
            + self.boot_disk_gb_hour * boot_gb
            + gpu
        )

    def uhost(
        self,
        charge_type: str,
        cpu: int,
        memory_mb: int,
        gpu_type: str | None = None,
        gpus: int = 0,
        boot_gb: int = 40,
        count: int = 1,
        quantity: int = 1,
    ) -> Decimal:
        """GetUHostInstancePrice's Price for `count` hosts (元)."""
        hourly = self.uhost_hourly(cpu, memory_mb, gpu_type, gpus, boot_gb)
        return self.for_charge(hourly, charge_type, quantity) * count

    def ufs_fen(
        self, charge_type: str, size_gb: int, storage_type: str, quantity: int = 1
    ) -> Decimal:
        """DescribeUFSVolumePrice's Price (分)."""
        hourly = self.ufs_gb_hour_fen[storage_type] * size_gb
        return self.for_charge(hourly, charge_type, quantity)

    def eip(self, charge_type: str, bandwidth: int, quantity: int = 1) -> Decimal:
        """GetEIPPrice's Price (元)."""
        return self.for_charge(self.eip_mbps_hour * bandwidth, charge_type, quantity)


def _default_offers() -> list[Offer]:
    zones = {
        "cn-bj2": ("cn-bj2-02", "cn-bj2-03", "cn-bj2-05"),
        "cn-sh2": ("cn-sh2-01", "cn-sh2-02", "cn-sh2-03"),
        "cn-gd": ("cn-gd-02",),
        "cn-wlcb": ("cn-wlcb-01", "cn-wlcb-03"),
        "hk": ("hk-02", "hk-03"),
    }
    offers: list[Offer] = []
    general = (1, 2, 4, 8, 16, 32, 64)
    for zone in (z for zs in zones.values() for z in zs):
        offers.append(Offer("N", zone, False, general, (1, 2, 4, 8)))
        offers.append(Offer("C", zone, False, general[1:], (1, 2, 4)))
        # O boots from RSSD only (API uhost-api/disk_type.md).
        offers.append(Offer("O", zone, False, general, (1, 2, 4, 8), boot_disks=("CLOUD_RSSD",)))
    gpu_zones = {
        "P40": ("cn-bj2-02", "cn-sh2-02"),
        "T4": ("cn-bj2-05",),
        "T4S": ("cn-bj2-02", "cn-gd-02", "cn-bj2-05"),
        "V100S": ("cn-bj2-02", "cn-gd-02", "cn-sh2-01"),
        "A100": ("cn-wlcb-01",),
        # the fake's own choice from here on: no source lists these types' zones
        "A800": ("cn-bj2-02", "cn-bj2-03", "cn-bj2-05"),
        "H20": ("cn-bj2-02", "cn-bj2-03", "cn-bj2-05"),
        "4090": ("cn-bj2-02", "cn-bj2-03", "cn-bj2-05"),
    }
    memory = {
        "P40": 24,
        "T4": 16,
        "T4S": 16,
        "V100S": 32,
        "A100": 80,
        "A800": 80,
        "H20": 96,
        "4090": 24,
    }
    for name, where in gpu_zones.items():
        small = name in ("P40", "T4")
        cpus = (4, 8, 16, 32) if small else (8, 16, 32, 64)
        gpus = (1, 2, 4) if small else (1, 2, 4, 8)
        for zone in where:
            offers.append(
                Offer(name, zone, True, cpus, (2, 4, 8), gpus=gpus, graphics_memory_gb=memory[name])
            )
    return offers


@dataclass
class Catalog:
    """The fake account's view of what UCloud sells; tests change it."""

    regions: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "cn-bj2": ("cn-bj2-02", "cn-bj2-03", "cn-bj2-05"),
            "cn-sh2": ("cn-sh2-01", "cn-sh2-02", "cn-sh2-03"),
            "cn-gd": ("cn-gd-02",),
            "cn-wlcb": ("cn-wlcb-01", "cn-wlcb-03"),
            "hk": ("hk-02", "hk-03"),
        }
    )
    offers: list[Offer] = field(default_factory=_default_offers)
    prices: PriceBook = field(default_factory=PriceBook)

    def offer(self, name: str, zone: str) -> Offer:
        return next(o for o in self.offers if o.name == name and o.zone == zone)

    def sell_out(self, name: str, zone: str) -> None:
        self.offer(name, zone).status = "Soldout"

    def stop_selling(self, name: str, zone: str) -> None:
        self.offers = [o for o in self.offers if not (o.name == name and o.zone == zone)]


def catalog_of(cloud: FakeCloud) -> Catalog:
    """The catalog of one fake account (made on first use)."""
    catalog = cloud.__dict__.get("catalog")
    if catalog is None:
        catalog = Catalog()
        cloud.__dict__["catalog"] = catalog
    return catalog


# ---- request checks ------------------------------------------------------------------------


def _need(p: dict[str, Any], *names: str) -> None:
    for name in names:
        if p.get(name) in (None, "", []):
            raise ApiError(MISSING, f"Missing params [{name}]")


def _int(p: dict[str, Any], name: str, low: int, high: int, default: int | None = None) -> int:
    raw = p.get(name)
    if raw in (None, ""):
        if default is None:
            raise ApiError(MISSING, f"Missing params [{name}]")
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ApiError(BAD_PARAM, f"Params [{name}] not available") from None
    if not low <= value <= high:
        raise ApiError(BAD_PARAM, f"Params [{name}] not available")
    return value


def _region(catalog: Catalog, p: dict[str, Any]) -> str:
    _need(p, "Region")
    if p["Region"] not in catalog.regions:
        raise ApiError(BAD_PARAM, f"Params [Region] not available: {p['Region']}")
    return str(p["Region"])


def _charge_types(p: dict[str, Any], allowed: tuple[str, ...] = CHARGE_TYPES) -> tuple[str, ...]:
    """The asked ChargeType, or all three when it is left out (UHost and EIP docs)."""
    charge = p.get("ChargeType")
    if charge in (None, ""):
        return CHARGE_TYPES
    if charge not in allowed:
        raise ApiError(BAD_PARAM, "Params [ChargeType] not available")
    return (str(charge),)


# ---- uaccount ------------------------------------------------------------------------------


def get_region(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    """One RegionInfo per zone (SDK uaccount RegionInfoSchema: all fields required)."""
    regions = []
    for index, (region, zones) in enumerate(catalog_of(cloud).regions.items()):
        for zone in zones:
            regions.append(
                {
                    "RegionId": 1000 + index,
                    "RegionName": region,
                    "IsDefault": region == "cn-bj2",
                    "BitMaps": "1" * 16,
                    "Region": region,
                    "Zone": zone,
                }
            )
    return {"Regions": regions}


# ---- uhost ---------------------------------------------------------------------------------


def describe_available_instance_types(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    catalog = catalog_of(cloud)
    region = _region(catalog, p)
    zone = p.get("Zone")
    if zone and zone not in catalog.regions[region]:
        raise ApiError(BAD_PARAM, f"Params [Zone] not available: {zone}")
    wanted = set(p.get("MachineTypes") or [])
    items = [
        o.view()
        for o in catalog.offers
        if o.zone in catalog.regions[region]
        and (not zone or o.zone == zone)
        and (not wanted or o.name in wanted or (o.gpu and "G" in wanted))
    ]
    return {"AvailableInstanceTypes": items, "Status": "Normal"}


UHOST_MACHINE_TYPES = ("N", "C", "G", "O", "OS", "OPRO", "OMAX", "O.BM", "O.EPC")


def get_uhost_instance_price(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    """API uhost-api/get_uhost_instance_price.md: CPU 1-64, Memory [1024, 262144] in 1024 steps,
    Count [1,5], exactly one boot disk; without ImageId the boot disk size is required."""
    catalog = catalog_of(cloud)
    _region(catalog, p)
    cpu = _int(p, "CPU", 1, 64)
    memory = _int(p, "Memory", 1024, 262144)
    if memory % 1024:
        raise ApiError(BAD_PARAM, "Params [Memory] not available")
    count = _int(p, "Count", 1, 5)
    machine = p.get("MachineType") or "N"
    if machine not in UHOST_MACHINE_TYPES:
        raise ApiError(BAD_PARAM, "Params [MachineType] not available")
    disks = p.get("Disks") or []
    boots = [d for d in disks if str(d.get("IsBoot")).lower() == "true"]
    if len(boots) != 1:
        raise ApiError(BAD_PARAM, "Params [Disks] not available")
    if not p.get("ImageId"):
        _need(boots[0], "Size")
    boot_gb = _int(boots[0], "Size", 20, 500)
    gpu_type, gpus = None, 0
    if machine == "G":
        _need(p, "GpuType")
        gpu_type, gpus = str(p["GpuType"]), _int(p, "GPU", 1, 8)
    quantity = _int(p, "Quantity", 0, 60, default=1)
    book = catalog.prices
    price_set = []
    for charge in _charge_types(p, (*CHARGE_TYPES, "Spot")):
        price = book.uhost(charge, cpu, memory, gpu_type, gpus, boot_gb, count, quantity)
        price_set.append(
            {
                "ChargeType": charge,
                "Price": float(price),
                "OriginalPrice": float(price),
                "PriceDetail": {"UHost": float(price), "UDisk": 0.0},
            }
        )
    return {"PriceSet": price_set}


# ---- ufs / unet ----------------------------------------------------------------------------


def describe_ufs_volume_price(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    """API ufs-api/describe_ufs_volume_price.md: Basic 500 GB minimum, 100 GB steps, up to 100 TB;
    Advanced 100 GB minimum, up to 20 TB; ChargeType defaults to Dynamic; Price in 分."""
    catalog = catalog_of(cloud)
    _region(catalog, p)
    _need(p, "Size", "StorageType")
    storage = p["StorageType"]
    if storage not in ("Basic", "Advanced"):
        raise ApiError(BAD_PARAM, "Params [StorageType] not available")
    low, high = (500, 102400) if storage == "Basic" else (100, 20480)
    size = _int(p, "Size", low, high)
    if size % 100:
        raise ApiError(BAD_PARAM, "Params [Size] not available")
    charge = p.get("ChargeType") or "Dynamic"
    if charge not in (*CHARGE_TYPES, "Trial"):
        raise ApiError(BAD_PARAM, "Params [ChargeType] not available")
    quantity = _int(p, "Quantity", 0, 60, default=1)
    price = catalog.prices.ufs_fen(charge, size, storage, quantity)
    return {"DataSet": [{"ChargeType": charge, "Price": float(price), "ChargeName": "UFS"}]}


def get_eip_price(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    """API unet-api/get_eip_price.md: Bandwidth [0-800] Mbps; OperatorName Bgp in cn-* regions,
    International in hk and abroad; PayMode Traffic|Bandwidth|ShareBandwidth."""
    catalog = catalog_of(cloud)
    region = _region(catalog, p)
    _need(p, "OperatorName")
    bandwidth = _int(p, "Bandwidth", 0, 800)
    line = "Bgp" if region.startswith("cn-") else "International"
    if p["OperatorName"] != line:
        raise ApiError(BAD_PARAM, "Params [OperatorName] not available")
    if (p.get("PayMode") or "Bandwidth") not in ("Traffic", "Bandwidth", "ShareBandwidth"):
        raise ApiError(BAD_PARAM, "Params [PayMode] not available")
    quantity = _int(p, "Quantity", 0, 60, default=1)
    price_set = []
    for charge in _charge_types(p):
        price = catalog.prices.eip(charge, bandwidth, quantity)
        price_set.append(
            {
                "ChargeType": charge,
                "Price": float(price),
                "OriginalPrice": float(price),
                "PurchaseValue": 0,
            }
        )
    return {"PriceSet": price_set}


HANDLERS: dict[str, Handler] = {
    "GetRegion": get_region,
    "DescribeAvailableInstanceTypes": describe_available_instance_types,
    "GetUHostInstancePrice": get_uhost_instance_price,
    "DescribeUFSVolumePrice": describe_ufs_volume_price,
    "GetEIPPrice": get_eip_price,
}

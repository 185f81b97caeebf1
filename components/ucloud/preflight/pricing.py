"""What the stack costs, priced by UCloud's own price actions under the stack's chargeType.

How UCloud quotes prices (ucloud-sdk-python3 0.11.150 docstrings; API docs say the same):
- GetUHostInstancePrice (uhost/client.py; API uhost-api/get_uhost_instance_price.md):
  PriceSet[].Price "单位: 元"; ChargeType "Dynamic, 按小时付费", Month, Year; "Quantity 购买时长.
  默认: 1. 按小时购买(Dynamic)时无需此参数"; Count "购买台数, 范围[1,5]". We ask for Count=1 and
  multiply, so quantity is ours and never over 5. The API example prices an N 2C/4G host with
  ChargeType Dynamic at 0.42: per host and hour. Disks: one boot disk ("Disks数组中有且只能有
  一块盘是系统盘"; without ImageId the boot disk size is required).
- DescribeUFSVolumePrice (ufs/client.py; API ufs-api/describe_ufs_volume_price.md):
  DataSet[].Price "价格 (单位: 分)": cents, divided by 100 here. Quantity "购买UFS的时长, 默认为1".
- GetEIPPrice (unet/client.py; API unet-api/get_eip_price.md): PriceSet[].Price 单位"元";
  Bandwidth in Mbps; OperatorName Bgp|International; PayMode Bandwidth (the program's default,
  components/ucloud/eip.py).
- No price action: NAT gateways (vpc service), ULB (ulb service; the API server's external ULB
  and a LoadBalancer Service's ULB). UK8S dedicated clusters add no fee of their own
  ("专有版 UK8S 不额外收费", UK8S-doc price.md).
Unconfirmed: that a Month price with Quantity=1 is one whole month (the docs only say Quantity=0
means "to the end of this month"), and that UFS's Dynamic price is per hour (UFS's doc does not
say; UHost's and EIP's docs define Dynamic as hourly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from components.ucloud.preflight.availability import describe_error
from components.ucloud.preflight.readonly import ReadOnlyApi
from components.ucloud.preflight.stack import HostGroup, StackPlan

HOURS_PER_MONTH = Decimal(730)  # the convention: a month is 730 hours
MONTHS_PER_YEAR = Decimal(12)
CENTS = Decimal(100)
UNIT_OF = {"Dynamic": "hour", "Month": "month", "Year": "year"}
EIP_PAY_MODE = "Bandwidth"  # components/ucloud/eip.py EipArgs.charge_mode default


def money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class CostLine:
    """One billable resource: UCloud's unit price for one of it, times how many."""

    resource: str
    zone: str
    quantity: int
    unit_price: Decimal  # CNY per `unit`
    unit: str  # hour, month or year

    def per_month(self) -> Decimal:
        total = self.unit_price * self.quantity
        if self.unit == "hour":
            return total * HOURS_PER_MONTH
        if self.unit == "year":
            return total / MONTHS_PER_YEAR
        return total

    def per_hour(self) -> Decimal:
        if self.unit == "hour":
            return self.unit_price * self.quantity
        return self.per_month() / HOURS_PER_MONTH


@dataclass
class Estimate:
    """Priced lines, what could not be priced, and the totals the last line prints."""

    charge_type: str
    lines: list[CostLine] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def hourly(self) -> Decimal:
        """Dynamic: the sum of hourly prices; Month/Year: the monthly total / 730."""
        if self.charge_type == "Dynamic":
            return sum((line.per_hour() for line in self.lines), Decimal(0))
        return self.monthly() / HOURS_PER_MONTH

    def monthly(self) -> Decimal:
        """Dynamic: the hourly total x 730; Month/Year: the sum of monthly prices."""
        if self.charge_type == "Dynamic":
            return self.hourly() * HOURS_PER_MONTH
        return sum((line.per_month() for line in self.lines), Decimal(0))

    def summary(self) -> str:
        return f"estimated cost: {money(self.hourly())} CNY/hour, {money(self.monthly())} CNY/month"


def _pick(entries: list[dict[str, Any]] | None, charge_type: str, what: str) -> Decimal:
    for entry in entries or []:
        if entry.get("ChargeType") == charge_type and entry.get("Price") is not None:
            return Decimal(str(entry["Price"]))
    raise LookupError(f"{what}: UCloud returned no {charge_type} price")


def _duration(charge_type: str) -> dict[str, Any]:
    """Quantity=1 (one month or one year); Dynamic needs none."""
    return {} if charge_type == "Dynamic" else {"Quantity": 1}


@dataclass
class Pricer:
    """Price actions with a cache, so the cost view's variants re-ask only what changed."""

    api: ReadOnlyApi
    _cache: dict[tuple[Any, ...], Decimal] = field(default_factory=dict)

    def _cached(self, cache_key: tuple[Any, ...], ask: Callable[[], Decimal]) -> Decimal:
        if cache_key not in self._cache:
            self._cache[cache_key] = ask()
        return self._cache[cache_key]

    def host(self, group: HostGroup, charge_type: str) -> Decimal:
        request: dict[str, Any] = {
            "Zone": group.zone,
            "MachineType": group.machine_type,
            "CPU": group.cpu,
            "Memory": group.memory_mb,
            "Count": 1,
            "ChargeType": charge_type,
            "Disks": [{"IsBoot": "True", "Size": group.boot_disk_gb, "Type": group.boot_disk_type}],
            **_duration(charge_type),
        }
        if group.gpu_type:
            request.update({"GpuType": group.gpu_type, "GPU": group.gpus})
        cache_key = ("host", charge_type, *sorted((k, str(v)) for k, v in request.items()))
        return self._cached(
            cache_key,
            lambda: _pick(
                self.api.call("uhost", "get_uhost_instance_price", request).get("PriceSet"),
                charge_type,
                "GetUHostInstancePrice",
            ),
        )

    def ufs(self, size_gb: int, storage_type: str, charge_type: str) -> Decimal:
        request = {
            "Size": size_gb,
            "StorageType": storage_type,
            "ChargeType": charge_type,
            "Quantity": 1,
        }
        return self._cached(
            ("ufs", size_gb, storage_type, charge_type),
            lambda: (
                _pick(
                    self.api.call("ufs", "describe_ufs_volume_price", request).get("DataSet"),
                    charge_type,
                    "DescribeUFSVolumePrice",
                )
                / CENTS
            ),
        )

    def eip(self, bandwidth: int, operator: str, charge_type: str) -> Decimal:
        request = {
            "Bandwidth": bandwidth,
            "OperatorName": operator,
            "ChargeType": charge_type,
            "PayMode": EIP_PAY_MODE,
            **_duration(charge_type),
        }
        return self._cached(
            ("eip", bandwidth, operator, charge_type),
            lambda: _pick(
                self.api.call("unet", "get_eip_price", request).get("PriceSet"),
                charge_type,
                "GetEIPPrice",
            ),
        )


def unpriced(plan: StackPlan) -> list[str]:
    """Billable things no SDK price action covers; said plainly instead of guessed."""
    out = ["NAT gateway: no price action in the SDK's vpc service"]
    if plan.external_api_server:
        out.append(
            "external API server: UK8S buys a ULB with a 1 Mbps EIP (UK8S-doc "
            "userguide/createcluster.md); the SDK's ulb service has no price action, and the "
            "EIP's charge type is UK8S's choice"
        )
    if plan.load_balancer:
        out.append(
            f"the inference Service's {plan.load_balancer} ULB: no price action in the SDK's ulb "
            "service"
        )
    return out


def estimate(pricer: Pricer, plan: StackPlan) -> Estimate:
    """Price every billable resource of the plan; a failed price action is a problem."""
    charge = plan.charge_type
    unit = UNIT_OF[charge]
    result = Estimate(charge_type=charge, unpriced=unpriced(plan))

    def add(resource: str, zone: str, quantity: int, ask: Callable[[], Decimal]) -> None:
        if quantity <= 0:
            return
        try:
            result.lines.append(CostLine(resource, zone, quantity, ask(), unit))
        except Exception as error:
            text = str(error) if isinstance(error, LookupError) else describe_error(error)
            result.problems.append(f"{resource} in {zone}: could not be priced: {text}")

    for group in plan.hosts:
        add(
            f"{group.role} ({group.shape})",
            group.zone,
            group.count,
            lambda g=group: pricer.host(g, charge),
        )
    add(
        f"UFS {plan.ufs_storage_type} {plan.ufs_size_gb} GB",
        plan.region,
        1,
        lambda: pricer.ufs(plan.ufs_size_gb, plan.ufs_storage_type, charge),
    )
    add(
        f"NAT EIP {plan.nat_operator} {plan.nat_bandwidth_mbps} Mbps",
        plan.region,
        1,
        lambda: pricer.eip(plan.nat_bandwidth_mbps, plan.nat_operator, charge),
    )
    return result

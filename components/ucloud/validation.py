"""Input checks shared by the providers: each failure names the field, the bad
value and what is allowed, because Pulumi prints these to the user verbatim."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from typing import Any

from pulumi.dynamic import CheckFailure
from pulumi.runtime.rpc import UNKNOWN

HIDDEN = "(value hidden)"
# Billing modes of EIPs, UFS volumes and cluster masters (nodes also allow "Postpay").
CHARGE_TYPES = ("Dynamic", "Month", "Year")


def is_unknown(value: Any) -> bool:
    """During preview an input computed from another resource is a placeholder."""
    return isinstance(value, str) and value == UNKNOWN


def as_int(value: Any) -> Any:
    """Pulumi sends numbers as floats; 500.0 means 500."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class Checker:
    """Collects CheckFailures over one set of inputs."""

    def __init__(self, inputs: Mapping[str, Any]) -> None:
        self.inputs = inputs
        self.failures: list[CheckFailure] = []

    def fail(self, field: str, value: Any, allowed: str) -> None:
        self.failures.append(CheckFailure(field, f"{field}: got {value!r}; allowed: {allowed}"))

    def _present(self, field: str, required: bool) -> bool:
        value = self.inputs.get(field)
        if value is None or value == "":
            if required:
                self.fail(field, value, "a value is required")
            return False
        return not is_unknown(value)

    def text(self, field: str, required: bool = True, max_len: int = 63) -> None:
        if not self._present(field, required):
            return
        value = self.inputs[field]
        if not isinstance(value, str) or len(value) > max_len:
            self.fail(field, value, f"a string of 1 to {max_len} characters")

    def choice(self, field: str, allowed: Collection[str], required: bool = True) -> None:
        if self._present(field, required) and self.inputs[field] not in allowed:
            self.fail(field, self.inputs[field], "one of " + ", ".join(sorted(allowed)))

    def integer(
        self, field: str, low: int, high: int, step: int = 1, required: bool = True
    ) -> None:
        if not self._present(field, required):
            return
        value = as_int(self.inputs[field])
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, value, f"a whole number from {low} to {high}")
        elif not low <= value <= high or value % step:
            steps = f" in steps of {step}" if step > 1 else ""
            self.fail(field, value, f"a whole number from {low} to {high}{steps}")

    def boolean(self, field: str, required: bool = False) -> None:
        if self._present(field, required) and not isinstance(self.inputs[field], bool):
            self.fail(field, self.inputs[field], "true or false")

    def private_cidr(self, field: str, value: Any, min_prefix: int, max_prefix: int) -> None:
        if is_unknown(value):
            return
        allowed = (
            f"a private IPv4 CIDR (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16) with a "
            f"prefix length from /{min_prefix} to /{max_prefix}"
        )
        try:
            network = ipaddress.ip_network(str(value), strict=True)
        except ValueError:
            self.fail(field, value, allowed)
            return
        if (
            network.version != 4
            or not network.is_private
            or not min_prefix <= network.prefixlen <= max_prefix
        ):
            self.fail(field, value, allowed)

    def password(self, field: str) -> None:
        """UCloud host passwords: 8-30 characters with upper, lower case and digits."""
        if not self._present(field, True):
            return
        value = self.inputs[field]
        ok = (
            isinstance(value, str)
            and 8 <= len(value) <= 30
            and any(c.isupper() for c in value)
            and any(c.islower() for c in value)
            and any(c.isdigit() for c in value)
        )
        if not ok:
            self.failures.append(
                CheckFailure(
                    field,
                    f"{field}: got {HIDDEN}; allowed: 8 to 30 characters with at least one "
                    "upper-case letter, one lower-case letter and one digit",
                )
            )

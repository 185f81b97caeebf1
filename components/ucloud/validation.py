"""Input checks shared by the providers: each failure names the field, the bad
value and what is allowed, because Pulumi prints these to the user verbatim."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from pulumi.dynamic import CheckFailure
from pulumi.runtime.rpc import UNKNOWN

from components.ucloud import vocabulary

HIDDEN = "(value hidden)"
# Billing modes of EIPs, UFS volumes and cluster masters (nodes also allow "Postpay").
CHARGE_TYPES = vocabulary.CHARGE_TYPES

# Kubernetes label syntax (an optional DNS-subdomain prefix, a name of at most 63 characters);
# UK8S passes labels and taints as "k=v,k=v" (API add_uk8s_uhost_node.md), so these forbid ','
# and '=' inside names and values. One rule for config and provider alike.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")
_TAINT = re.compile(r"^([^=:,]+)=([^:,]*):(\w+)$")


def label_problem(key: str, value: str) -> str | None:
    """Why UK8S/Kubernetes would refuse this node label, or None."""
    if not LABEL_KEY.match(key) or not LABEL_VALUE.match(value):
        return (
            f"{key}={value!r} is not a valid Kubernetes label "
            "(prefix/name=value, alphanumerics, '-', '_', '.')"
        )
    return None


def taint_problem(taint: str) -> str | None:
    """Why UK8S would refuse this taint (API: "形式为key=value:effect"), or None."""
    match = _TAINT.match(taint)
    if not match or match.group(3) not in vocabulary.TAINT_EFFECTS:
        return f"{taint!r} must be key=value:Effect with Effect one of " + ", ".join(
            vocabulary.TAINT_EFFECTS
        )
    if not LABEL_KEY.match(match.group(1)) or not LABEL_VALUE.match(match.group(2)):
        return f"{taint!r}: key and value must follow Kubernetes label syntax"
    return None


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
        self.in_range(field, vocabulary.Range(low, high, step), required)

    def in_range(self, field: str, allowed: vocabulary.Range, required: bool = True) -> None:
        """A whole number inside one of the vocabulary's ranges."""
        if not self._present(field, required):
            return
        value = as_int(self.inputs[field])
        if isinstance(value, bool) or not isinstance(value, int) or not allowed.allows(value):
            self.fail(field, value, allowed.describe())

    def int_choice(self, field: str, allowed: Collection[int], required: bool = True) -> None:
        if not self._present(field, required):
            return
        value = as_int(self.inputs[field])
        if isinstance(value, bool) or value not in allowed:
            self.fail(field, value, "one of " + ", ".join(str(a) for a in allowed))

    def region(self) -> None:
        """A region UCloud lists (an empty one is reported by the base check)."""
        self.choice("region", vocabulary.REGIONS, required=False)

    def zone(self, field: str, value: Any) -> None:
        """A zone UCloud lists for the input region."""
        region = self.inputs.get("region")
        if is_unknown(value) or is_unknown(region):
            return
        zones = vocabulary.zones_of(str(region))
        if value not in zones:
            listed = ", ".join(zones) if zones else f"none (region {region!r} is not listed)"
            self.fail(field, value, f"a zone of region {region}: {listed}")

    def boolean(self, field: str, required: bool = False) -> None:
        if self._present(field, required) and not isinstance(self.inputs[field], bool):
            self.fail(field, self.inputs[field], "true or false")

    def private_cidr(self, field: str, value: Any, min_prefix: int, max_prefix: int) -> None:
        """An RFC 1918 CIDR with the prefix limits UCloud gives its block (vocabulary)."""
        if is_unknown(value):
            return
        problem = vocabulary.cidr_problem(str(value), min_prefix, max_prefix)
        if problem is not None:
            self.fail(field, value, problem)

    def labels(self, field: str, max_count: int) -> None:
        labels = self.inputs.get(field)
        if is_unknown(labels):
            return
        if not isinstance(labels, Mapping):
            self.fail(field, labels, "a map of label names to values")
            return
        if len(labels) > max_count:
            self.fail(field, labels, f"at most {max_count} labels")
        for key, value in labels.items():
            problem = label_problem(str(key), str(value))
            if problem:
                self.fail(field, {key: value}, problem)

    def taints(self, field: str) -> None:
        taints = self.inputs.get(field)
        if is_unknown(taints):
            return
        if not isinstance(taints, list | tuple) or len(taints) > vocabulary.MAX_NODE_TAINTS:
            self.fail(
                field,
                taints,
                f"a list of at most {vocabulary.MAX_NODE_TAINTS} 'key=value:Effect' strings",
            )
            return
        for taint in taints:
            problem = taint_problem(str(taint))
            if problem:
                self.fail(field, taint, problem)

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

"""One preflight: the read-only checks, then the estimate, then the cost view.

Shared by the CLI (tools/preflight.py) and the Pulumi hook (in_pulumi.py), so both say the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from components.ucloud.api import UCloudApi
from components.ucloud.credentials import UCloudCredentials
from components.ucloud.preflight import report
from components.ucloud.preflight.availability import (
    ON_SALE,
    Findings,
    check,
    find_offer,
    names_on_sale,
    sizes_problems,
)
from components.ucloud.preflight.pricing import Estimate, Pricer, estimate
from components.ucloud.preflight.readonly import ReadOnlyApi
from components.ucloud.preflight.stack import StackConfig, StackPlan, plan_from_config, variant
from components.ucloud.retry import RetryPolicy
from components.ucloud.vocabulary import CHARGE_TYPES

MAX_GPU_ALTERNATIVES = 3  # shown: the cheapest that fit
MAX_GPU_CANDIDATES = 10  # priced at most, to bound the calls
PREFLIGHT_RETRY = RetryPolicy(attempts=4, base_delay=1.0, max_delay=8.0)


class PreflightError(ValueError):
    """Every problem preflight found, one per line, like components/errors.ConfigError."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(report.problems_message(stack, problems))


def read_only_api(
    credentials: UCloudCredentials,
    region: str,
    project_id: str | None,
    retry: RetryPolicy = PREFLIGHT_RETRY,
) -> ReadOnlyApi:
    """The stack's project wins over UCLOUD_PROJECT_ID, as in the providers (base.py)."""
    return ReadOnlyApi(
        UCloudApi(
            credentials=credentials,
            region=region,
            project_id=project_id or credentials.default_project_id,
            retry=retry,
        )
    )


@dataclass
class Outcome:
    stack: str
    findings: Findings
    estimate: Estimate | None = None
    views: list[tuple[str, Estimate | str]] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.findings.problems + (self.estimate.problems if self.estimate else [])

    def text(self) -> str:
        """What a passing preflight prints; the last line is the estimate."""
        parts = [report.checks(self.findings)]
        if self.views:
            parts.append(report.cost_view(self.views))
        if self.estimate is not None:
            parts.append(report.table(self.estimate))
        return "\n\n".join(parts)


def gpu_alternatives(plan: StackPlan, offers: Mapping[str, list[dict]]) -> list[str]:
    """Other GPU types on sale in every GPU zone of the stack, in the stack's node shape."""
    zones = list(dict.fromkeys(g.zone for g in plan.gpu_nodes))
    if not zones:
        return []
    names = set.intersection(
        *(set(names_on_sale(offers.get(z, []), True, plan.gpu_machine_type)) for z in zones)
    )
    names.discard(plan.gpu_type)
    fitting = []
    for name in sorted(names):
        fits = True
        for group in plan.gpu_nodes:
            alt = replace(group, gpu_type=name)
            offer = find_offer(offers.get(group.zone, []), alt)
            if (
                offer is None
                or offer.get("Status") not in ON_SALE
                or sizes_problems(alt, offer, group.zone)
            ):
                fits = False
        if fits:
            fitting.append(name)
    return fitting[:MAX_GPU_CANDIDATES]


def _priced(pricer: Pricer, plan: StackPlan) -> Estimate | str:
    result = estimate(pricer, plan)
    return result if not result.problems else "could not be priced: " + "; ".join(result.problems)


def cost_views(
    cfg: StackConfig, plan: StackPlan, now: Estimate, pricer: Pricer, findings: Findings
) -> list[tuple[str, Estimate | str]]:
    rows: list[tuple[str, Estimate | str]] = [(f"chargeType {plan.charge_type} (now)", now)]
    for charge in CHARGE_TYPES:
        if charge != plan.charge_type:
            rows.append((f"chargeType {charge}", _priced(pricer, variant(cfg, charge_type=charge))))
    count = plan.gpu_node_count
    rows.append(
        (
            f"gpuNodeCount {count + 1} (now {count})",
            _priced(pricer, variant(cfg, gpu_node_count=count + 1)),
        )
    )
    if count > 1:
        rows.append(
            (
                f"gpuNodeCount {count - 1} (now {count})",
                _priced(pricer, variant(cfg, gpu_node_count=count - 1)),
            )
        )
    priced = [
        (name, estimate(pricer, variant(cfg, gpu_type=name)))
        for name in gpu_alternatives(plan, findings.offers)
    ]
    cheapest = sorted((p for p in priced if not p[1].problems), key=lambda p: p[1].monthly())
    for name, result in cheapest[:MAX_GPU_ALTERNATIVES]:
        rows.append((f"gpuType {name} (now {plan.gpu_type})", result))
    return rows


def run_preflight(cfg: StackConfig, api: ReadOnlyApi, *, with_cost_view: bool = True) -> Outcome:
    """Checks first; the estimate only when they pass (prices of what can't be bought mislead)."""
    plan = plan_from_config(cfg)
    findings = check(api, plan)
    outcome = Outcome(stack=plan.stack, findings=findings)
    if findings.problems:
        return outcome
    pricer = Pricer(api)
    outcome.estimate = estimate(pricer, plan)
    if with_cost_view and not outcome.estimate.problems:
        outcome.views = cost_views(cfg, plan, outcome.estimate, pricer, findings)
    return outcome

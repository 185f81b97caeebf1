"""Text for people: the checks, the cost view and the cost table (its last line the estimate)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from components.ucloud.preflight.availability import Findings
from components.ucloud.preflight.pricing import Estimate, money

COLUMNS = ("resource", "zone", "quantity", "unit price", "CNY/hour", "CNY/month")
RIGHT_ALIGNED = frozenset({2, 4, 5})


def redact(text: str, secrets: Iterable[str]) -> str:
    """Belt and braces: no key ever reaches the terminal, whatever an error message holds."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def problems_message(stack: str, problems: Sequence[str]) -> str:
    return f"preflight of stack {stack!r} found {len(problems)} problem(s):\n  - " + "\n  - ".join(
        problems
    )


def checks(findings: Findings) -> str:
    lines = ["checks:"]
    lines += [f"  ok           {text}" for text in findings.passed]
    lines += [f"  not checked  {text}" for text in findings.not_checked]
    return "\n".join(lines)


def table(estimate: Estimate) -> str:
    """Resource rows, a total row, and the exact `estimated cost: ...` line last."""
    rows = [
        (
            line.resource,
            line.zone,
            str(line.quantity),
            f"{money(line.unit_price)}/{line.unit}",
            money(line.per_hour()),
            money(line.per_month()),
        )
        for line in estimate.lines
    ]
    rows.append(("total", "", "", "", money(estimate.hourly()), money(estimate.monthly())))
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]

    def render(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in RIGHT_ALIGNED else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [render(COLUMNS), rule, *(render(r) for r in rows[:-1]), rule, render(rows[-1])]
    notes = [f"not priced: {text}" for text in estimate.unpriced]
    head = f"cost under chargeType {estimate.charge_type} (prices as UCloud quotes them, CNY):"
    return "\n".join([head, *body, *notes, estimate.summary()])


def cost_view(rows: Sequence[tuple[str, Estimate | str]]) -> str:
    """One line per variant: its label and its totals (or why it could not be priced)."""
    width = max((len(label) for label, _ in rows), default=0)
    lines = ["what changes the cost (the same stack with one setting changed):"]
    for label, result in rows:
        if isinstance(result, Estimate):
            text = f"{money(result.hourly())} CNY/hour, {money(result.monthly())} CNY/month"
        else:
            text = result
        lines.append(f"  {label.ljust(width)}  {text}")
    return "\n".join(lines)

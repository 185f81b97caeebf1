"""What a change does to a stack, from two offline plans: creates, in-place updates (with the
changed inputs), deletes and replacements, the way `pulumi preview --diff` summarises them.

Why: a reviewer should see that a pull request replaces the GPU node pool before anyone runs
`pulumi preview` with credentials, and on a fork, where no secrets exist. Replacement is decided
the way the engine decides it: UCloud resources ask their own provider's `diff` (the same code
`pulumi up` runs); Kubernetes objects use the fields pulumi-kubernetes replaces on
(provider/pkg/provider/diff.go, `forceNew`), plus `metadata.name` and `metadata.namespace`.

`make plan-diff BASE=<git ref> STACK=<stack>` plans the ref in a temporary git worktree and the
working tree here, then prints the difference.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from tools.stack_config import ROOT, stacks

UCLOUD_TYPE_PREFIX = "pulumi-python:dynamic/ucloud:"
# pulumi-kubernetes provider/pkg/provider/diff.go: the fields whose change replaces the object,
# by kind (apiVersion group/version as in the type token). A prefix match: a change anywhere
# under `spec.template` of a Job replaces it.
_METADATA_FORCE_NEW = ("metadata.name", "metadata.namespace")
K8S_FORCE_NEW: dict[str, tuple[str, ...]] = {
    "apps/v1:Deployment": ("spec.selector",),
    "apps/v1:DaemonSet": ("spec.selector",),
    "apps/v1:StatefulSet": (
        "spec.podManagementPolicy",
        "spec.revisionHistoryLimit",
        "spec.selector",
        "spec.serviceName",
        "spec.volumeClaimTemplates",
    ),
    "batch/v1:Job": ("spec.completions", "spec.parallelism", "spec.selector", "spec.template"),
    "core/v1:ConfigMap": ("binaryData", "data"),
    "core/v1:PersistentVolume": ("spec.nfs", "spec.hostPath", "spec.csi", "spec.local"),
    "core/v1:PersistentVolumeClaim": ("spec",),
    "core/v1:Secret": ("type", "stringData", "data"),
    "core/v1:Service": ("spec.clusterIP",),
    "storage.k8s.io/v1:StorageClass": ("parameters", "provisioner"),
}
_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class InputChange:
    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Step:
    """One resource's fate: create, update, replace or delete."""

    op: str
    urn: str
    type: str
    changes: tuple[InputChange, ...] = ()
    replace_because: tuple[str, ...] = ()
    protected: bool = False


@dataclass
class PlanDiff:
    steps: list[Step] = field(default_factory=list)
    unchanged: int = 0
    output_changes: list[InputChange] = field(default_factory=list)

    def count(self, op: str) -> int:
        return sum(1 for s in self.steps if s.op == op)


def load_plan(plan_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """resources.json keyed by URN, and outputs.json, as `tools.plan` wrote them."""
    resources = json.loads((plan_dir / "resources.json").read_text())
    outputs_path = plan_dir / "outputs.json"
    outputs = json.loads(outputs_path.read_text()) if outputs_path.exists() else {}
    return {r["urn"]: r for r in resources}, outputs


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested inputs by path (`spec.template.spec.containers[0].image`)."""
    if isinstance(value, Mapping):
        if not value and prefix:
            return {prefix: {}}
        leaves: dict[str, Any] = {}
        for key in sorted(value):
            leaves.update(flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return leaves
    if isinstance(value, list):
        if not value:
            return {prefix: []}
        leaves = {}
        for index, item in enumerate(value):
            leaves.update(flatten(item, f"{prefix}[{index}]"))
        return leaves
    return {prefix: value}


def input_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[InputChange]:
    before, after = flatten(old), flatten(new)
    return [
        InputChange(path, before.get(path), after.get(path))
        for path in sorted(set(before) | set(after))
        if before.get(path) != after.get(path)
    ]


@cache
def ucloud_providers() -> dict[str, type]:
    """Each UCloud resource's provider class, by the resource's type name (`Uk8sNode`)."""
    import components.ucloud as package
    from components.ucloud.base import UCloudProvider

    found: dict[str, type] = {}
    for module_info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, UCloudProvider)
                and value is not UCloudProvider
                and value.__name__.endswith("Provider")
            ):
                found[value.__name__.removesuffix("Provider")] = value
    return found


def replace_reasons(
    type_: str, old: Mapping[str, Any], new: Mapping[str, Any], changes: Iterable[InputChange]
) -> list[str]:
    """The inputs whose change makes the engine replace this resource instead of updating it."""
    if type_.startswith(UCLOUD_TYPE_PREFIX):
        provider_class = ucloud_providers().get(type_.removeprefix(UCLOUD_TYPE_PREFIX))
        if provider_class is None:
            return []
        result = provider_class().diff("", dict(old), dict(new))
        return sorted(result.replaces or [])
    if type_.startswith("kubernetes:"):
        kind = type_.removeprefix("kubernetes:")
        fields = _METADATA_FORCE_NEW + K8S_FORCE_NEW.get(kind, ())
        reasons = []
        for change in changes:
            path = _INDEX.sub("", change.path)
            hit = next((f for f in fields if path == f or path.startswith(f + ".")), None)
            if hit and hit not in reasons:
                reasons.append(hit)
        return reasons
    return []


def diff_plans(base_dir: Path, head_dir: Path) -> PlanDiff:
    base, base_outputs = load_plan(base_dir)
    head, head_outputs = load_plan(head_dir)
    result = PlanDiff()
    for urn in sorted(set(base) | set(head)):
        old, new = base.get(urn), head.get(urn)
        if old is None:
            assert new is not None
            result.steps.append(Step("create", urn, new["type"], protected=bool(new["protect"])))
            continue
        if new is None:
            result.steps.append(Step("delete", urn, old["type"], protected=bool(old["protect"])))
            continue
        changes = input_changes(old["inputs"], new["inputs"])
        if not changes:
            result.unchanged += 1
            continue
        reasons = replace_reasons(new["type"], old["inputs"], new["inputs"], changes)
        result.steps.append(
            Step(
                "replace" if reasons else "update",
                urn,
                new["type"],
                tuple(changes),
                tuple(reasons),
                protected=bool(new["protect"]),
            )
        )
    result.output_changes = input_changes(base_outputs, head_outputs)
    return result


SYMBOLS = {"create": "+", "update": "~", "replace": "+-", "delete": "-"}


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def render_diff(diff: PlanDiff) -> str:
    lines: list[str] = []
    for step in diff.steps:
        flag = " [protected]" if step.protected else ""
        lines.append(f"{SYMBOLS[step.op]:>2} {step.type}  {_name(step.urn)}{flag}")
        if step.op == "replace":
            lines.append(f"      replaced because these changed: {', '.join(step.replace_because)}")
        for change in step.changes:
            lines.append(f"      {change.path}: {_short(change.old)} => {_short(change.new)}")
        if step.op in ("delete", "replace") and step.protected:
            lines.append("      protected: `pulumi up` refuses this until protection is lifted")
    if diff.output_changes:
        lines.append("Outputs:")
        for change in diff.output_changes:
            lines.append(f"  ~ {change.path}: {_short(change.old)} => {_short(change.new)}")
    parts = [
        f"{SYMBOLS[op]} {diff.count(op)} to {op}"
        for op in ("create", "update", "replace", "delete")
        if diff.count(op)
    ]
    summary = ", ".join(parts) if parts else "no changes"
    lines.append(f"Resources: {summary}; {diff.unchanged} unchanged")
    return "\n".join(lines)


def plan_into(tree: Path, stack: str, out_dir: Path) -> None:
    """Run `tools.plan` for the stack in `tree` (a checkout) with this interpreter."""
    done = subprocess.run(
        [sys.executable, "-m", "tools.plan", "--stack", stack, "--out", str(out_dir)],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"plan of stack {stack!r} in {tree} failed:\n{done.stderr.strip()}")


def plan_ref(ref: str, stack: str, out_dir: Path) -> None:
    """Plan a git ref in a throwaway worktree, so the working tree is never touched."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if sha.returncode != 0:
        raise RuntimeError(f"BASE={ref!r} is not a commit of this repository")
    with tempfile.TemporaryDirectory(prefix="plan-base-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(tree), sha.stdout.strip()],
            cwd=ROOT,
            check=True,
        )
        try:
            if not (tree / f"Pulumi.{stack}.yaml").exists():
                raise RuntimeError(f"BASE={ref!r} has no Pulumi.{stack}.yaml")
            plan_into(tree, stack, out_dir)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help=f"one of: {', '.join(stacks())}")
    parser.add_argument("--base", required=True, help="git ref to compare against (e.g. main)")
    parser.add_argument("--out", type=Path, default=None, help="default build/plan-diff/<stack>")
    args = parser.parse_args(argv)
    if args.stack not in stacks():
        parser.error(f"--stack {args.stack!r}: no Pulumi.{args.stack}.yaml here")
    out = args.out or ROOT / "build" / "plan-diff" / args.stack
    try:
        plan_ref(args.base, args.stack, out / "base")
        plan_into(ROOT, args.stack, out / "head")
    except RuntimeError as error:
        print(f"plan-diff: {error}", file=sys.stderr)
        return 1
    print(f"Stack {args.stack}: {args.base} -> working tree")
    print(render_diff(diff_plans(out / "base", out / "head")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

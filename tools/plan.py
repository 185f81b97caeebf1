"""Offline plan: run the real program under Pulumi's mock runtime with a stack's config file.

Why: reviewing a change should not need cloud credentials or the Pulumi CLI. `make plan STACK=dev`
writes build/plan/<stack>/resources.json (every resource with its inputs, secrets masked) and
manifests.yaml (every Kubernetes object), and prints the resource tree.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path
from typing import Any

import yaml

from tools.mock_outputs import factories
from tools.mock_runtime import SECRET_MASK, Plan, RecordedResource, run_program
from tools.stack_config import ROOT, load_stack, stacks


def plan_stack(
    stack: str, root: Path | None = None, overrides: dict[str, Any] | None = None
) -> Plan:
    """Run `__main__.py` for `stack` under mocks and return everything it declared."""
    root = root or ROOT
    settings = load_stack(stack, root, overrides)
    sys.path.insert(0, str(root))
    try:
        return run_program(
            lambda: runpy.run_path(str(root / "__main__.py"), run_name="__main__"),
            project=settings.project,
            stack=stack,
            config=settings.config,
            secret_keys=settings.secret_keys,
            outputs=factories(settings.config, settings.project),
        )
    finally:
        sys.path.remove(str(root))


def resource_entry(r: RecordedResource) -> dict[str, Any]:
    return {
        "urn": r.urn,
        "type": r.type,
        "name": r.name,
        "parent": r.parent,
        "provider": r.provider,
        "kind": "custom" if r.custom else "component",
        "protect": r.protect,
        "dependsOn": r.dependencies,
        "customTimeouts": r.custom_timeouts or None,
        "inputs": r.inputs,
    }


def render_tree(plan: Plan) -> str:
    """An indented tree like `pulumi preview` shows, components with their children."""
    children: dict[str | None, list[RecordedResource]] = {}
    urns = {r.urn for r in plan.resources}
    for r in plan.resources:
        parent = r.parent if r.parent in urns else None
        children.setdefault(parent, []).append(r)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for r in sorted(children.get(parent, []), key=lambda r: (r.type, r.name)):
            flags = " [protected]" if r.protect else ""
            details = key_inputs(r)
            details = f"  ({details})" if details else ""
            lines.append(f"{'  ' * depth}+ {r.type}  {r.name}{flags}{details}")
            walk(r.urn, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


# The inputs a reviewer looks for first, per resource type (the rest is in resources.json).
_KEY_INPUTS = {
    "pulumi-python:dynamic/ucloud:Uk8sNode": ("zone", "gpu_type", "gpu", "count", "cpu", "mem"),
    "pulumi-python:dynamic/ucloud:Uk8sCluster": ("k8s_version", "master_machine_type"),
    "pulumi-python:dynamic/ucloud:UfsVolume": ("size", "storage_type"),
    "pulumi-python:dynamic/ucloud:Eip": ("bandwidth", "charge_mode"),
    "pulumi-python:dynamic/ucloud:Vpc": ("cidr_blocks",),
    "pulumi-python:dynamic/ucloud:Subnet": ("cidr_block",),
}


def key_inputs(r: RecordedResource) -> str:
    """A few `key=value` pairs of the resource's inputs (images and replicas for workloads)."""
    inputs = r.inputs
    pairs = [(k, inputs[k]) for k in _KEY_INPUTS.get(r.type, ()) if k in inputs]
    spec = inputs.get("spec") if isinstance(inputs.get("spec"), dict) else {}
    if "replicas" in spec:
        pairs.append(("replicas", spec["replicas"]))
    template = (spec.get("template") or {}).get("spec") or {}
    images = [c.get("image") for c in template.get("containers") or [] if isinstance(c, dict)]
    if images:
        pairs.append(("image", ",".join(str(i) for i in images)))
    if r.type == "kubernetes:core/v1:Service" and "type" in spec:
        pairs.append(("type", spec["type"]))

    def text(value: object) -> str:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return value if isinstance(value, str) else json.dumps(value)

    return " ".join(f"{k}={text(v)}" for k, v in pairs)


def render_summary(plan: Plan) -> str:
    """What `pulumi preview` would say for a new stack: counts, then the outputs."""
    lines = [f"Resources:\n    + {len(plan.resources)} to create", "Outputs:"]
    for key in sorted(plan.outputs):
        value = SECRET_MASK if key in plan.secret_outputs else plan.outputs[key]
        shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        lines.append(f"    {key}: {shown if len(shown) <= 90 else shown[:87] + '...'}")
    return "\n".join(lines)


def write_plan(plan: Plan, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "resources.json").write_text(
        json.dumps(
            sorted((resource_entry(r) for r in plan.resources), key=lambda e: e["urn"]),
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    (out_dir / "manifests.yaml").write_text(
        yaml.safe_dump_all(
            sorted(plan.manifests(), key=lambda m: (m["kind"], m["metadata"]["name"])),
            sort_keys=True,
            default_flow_style=False,
        )
    )
    outputs = {k: (SECRET_MASK if k in plan.secret_outputs else v) for k, v in plan.outputs.items()}
    (out_dir / "outputs.json").write_text(json.dumps(outputs, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help=f"one of: {', '.join(stacks())}")
    parser.add_argument("--out", type=Path, default=None, help="default build/plan/<stack>")
    args = parser.parse_args(argv)
    if args.stack not in stacks():
        parser.error(
            f"--stack {args.stack!r}: no Pulumi.{args.stack}.yaml (stacks: {', '.join(stacks())})"
        )
    try:
        plan = plan_stack(args.stack)
    except Exception as exc:  # the user sees the reason, not a traceback through the SDK
        print(f"plan for stack {args.stack!r} failed: {exc}", file=sys.stderr)
        return 1
    out_dir = args.out or ROOT / "build" / "plan" / args.stack
    write_plan(plan, out_dir)
    print(render_tree(plan))
    print(render_summary(plan))
    print(
        f"\n{len(plan.resources)} resources, {len(plan.manifests())} Kubernetes objects "
        f"-> {out_dir.relative_to(ROOT) if out_dir.is_relative_to(ROOT) else out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Read a stack's configuration the way the Pulumi CLI hands it to the program.

Why: without the CLI, someone must merge Pulumi.yaml's declared defaults with Pulumi.<stack>.yaml
and encode values as the CLI does (strings; lists and objects as JSON). Encrypted values cannot be
decrypted offline; they become a placeholder marked secret, which is all a plan needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OFFLINE_SECRET = "offline-placeholder"


@dataclass(frozen=True)
class StackSettings:
    project: str
    stack: str
    config: dict[str, str]
    secret_keys: list[str]


def _encode(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def project_file(root: Path = ROOT) -> dict[str, Any]:
    return yaml.safe_load((root / "Pulumi.yaml").read_text())


def stacks(root: Path = ROOT) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def load_stack(
    stack: str, root: Path = ROOT, overrides: dict[str, Any] | None = None
) -> StackSettings:
    """Project defaults, then the stack file, then `overrides` (short keys or namespaced)."""
    project = project_file(root)
    name = project["name"]
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        known = ", ".join(stacks(root)) or "none"
        raise FileNotFoundError(f"no stack file {path.name} (stacks: {known})")
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, spec in (project.get("config") or {}).items():
        if isinstance(spec, dict) and "default" in spec:
            config[f"{name}:{key}"] = _encode(spec["default"])
    stack_values = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    for key, value in {**stack_values, **(overrides or {})}.items():
        full = key if ":" in key else f"{name}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[full] = OFFLINE_SECRET
            secret_keys.append(full)
        else:
            config[full] = _encode(value)
    return StackSettings(project=name, stack=stack, config=config, secret_keys=secret_keys)

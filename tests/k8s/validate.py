"""Validate rendered Kubernetes objects against the cluster version's OpenAPI schema (strict).

Reusable by the whole-stack tests: `assert_valid_manifests(plan.manifests(), "1.30")`.
Strict mode rejects unknown fields, which is what catches a misspelt key that the API server
would silently drop (or reject at `pulumi up` time).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kubernetes_validate

# What the mock runtime puts where a secret value was (Pulumi marks the whole field secret).
from tools.mock_runtime import SECRET_MASK

DEFAULT_VERSION = "1.30.0"
_SECRET_FIELDS = ("data", "stringData")


def supported_versions() -> list[str]:
    return kubernetes_validate.utils.all_versions()


def schema_errors(manifest: dict[str, Any], version: str = DEFAULT_VERSION) -> list[str]:
    """Every problem with one object, as 'Kind/name: path: message' lines (empty = valid)."""
    kind = manifest.get("kind", "?")
    name = manifest.get("metadata", {}).get("name", "?")
    manifest = _unmask_secret_payload(manifest)
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return [f"{kind}/{name}: {path}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"{kind}/{name}: {e.message}"]
    return []


def _unmask_secret_payload(manifest: dict[str, Any]) -> dict[str, Any]:
    """A masked Secret payload is a string where the schema wants a map: give it a stand-in map
    (only the shape is checked; the value never leaves the mock)."""
    if manifest.get("kind") != "Secret":
        return manifest
    out = dict(manifest)
    for key in _SECRET_FIELDS:
        if out.get(key) == SECRET_MASK:
            out[key] = {"masked": ""}
    return out


def assert_valid_manifests(
    manifests: Iterable[dict[str, Any]], version: str = DEFAULT_VERSION
) -> int:
    """Raise AssertionError listing every invalid object; return how many were checked."""
    problems: list[str] = []
    count = 0
    for manifest in manifests:
        count += 1
        problems += schema_errors(manifest, version)
    assert not problems, "schema violations:\n" + "\n".join(problems)
    assert count, "no Kubernetes objects to validate"
    return count

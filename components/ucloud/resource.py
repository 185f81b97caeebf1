"""Turning an Args dataclass into the property bag of a dynamic resource."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import pulumi

MODULE = "ucloud"


def resource_props(args: Any, computed: Iterable[str], secrets: Iterable[str] = ()) -> dict:
    """Inputs from args (not deep-copied: they may be Outputs), plus None for each output.

    A key present in the props becomes a typed `pulumi.Output` attribute of the resource.
    """
    props: dict[str, Any] = {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}
    for key in secrets:
        if props.get(key) is not None:
            props[key] = pulumi.Output.secret(props[key])
    props.update({key: None for key in computed})
    return props


def with_secret_outputs(
    opts: pulumi.ResourceOptions | None, secret_outputs: list[str]
) -> pulumi.ResourceOptions:
    """Merge additional_secret_outputs so the engine encrypts these fields in state."""
    return pulumi.ResourceOptions.merge(
        opts or pulumi.ResourceOptions(),
        pulumi.ResourceOptions(additional_secret_outputs=secret_outputs),
    )

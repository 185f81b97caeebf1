"""Turning an Args dataclass into the property bag of a dynamic resource."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import pulumi

MODULE = "ucloud"


def args_defaults(cls: type) -> dict[str, Any]:
    """An Args dataclass's fields and defaults (None for required ones), in field order.

    Providers use this as their `defaults`, so the two never drift apart.
    """
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
        else:
            defaults[f.name] = None
    return defaults


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

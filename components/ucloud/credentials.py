"""Where UCloud API keys come from: stack config first, then the environment.

Keys are never resource inputs, so they never land in Pulumi state; the provider
looks them up at call time through this one function.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

CONFIG_PUBLIC_KEY = "ucloud:publicKey"
CONFIG_PRIVATE_KEY = "ucloud:privateKey"
CONFIG_BASE_URL = "ucloud:baseUrl"
CONFIG_PROJECT_ID = "ucloud:projectId"
CONFIG_KEYS = (CONFIG_PUBLIC_KEY, CONFIG_PRIVATE_KEY, CONFIG_BASE_URL, CONFIG_PROJECT_ID)

ENV_PUBLIC_KEY = "UCLOUD_PUBLIC_KEY"
ENV_PRIVATE_KEY = "UCLOUD_PRIVATE_KEY"
ENV_BASE_URL = "UCLOUD_BASE_URL"
ENV_PROJECT_ID = "UCLOUD_PROJECT_ID"

DEFAULT_BASE_URL = "https://api.ucloud.cn"

ConfigLookup = Callable[[str], Any]


class MissingCredentialsError(RuntimeError):
    """No API key pair was found in stack config or in the environment."""


@dataclass(frozen=True)
class UCloudCredentials:
    """An API key pair plus the endpoint and default project it is used with."""

    public_key: str = field(repr=False)
    private_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    default_project_id: str | None = None


def _first(*values: Any) -> str | None:
    for value in values:
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def resolve_credentials(
    config: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> UCloudCredentials:
    """Stack config wins over env vars so one stack cannot pick up another's keys."""
    cfg = config or {}
    env = os.environ if environ is None else environ
    public_key = _first(cfg.get(CONFIG_PUBLIC_KEY), env.get(ENV_PUBLIC_KEY))
    private_key = _first(cfg.get(CONFIG_PRIVATE_KEY), env.get(ENV_PRIVATE_KEY))
    missing = [
        f"{config_key} (or env {env_key})"
        for value, config_key, env_key in (
            (public_key, CONFIG_PUBLIC_KEY, ENV_PUBLIC_KEY),
            (private_key, CONFIG_PRIVATE_KEY, ENV_PRIVATE_KEY),
        )
        if value is None
    ]
    if missing or public_key is None or private_key is None:
        raise MissingCredentialsError(
            "UCloud credentials missing: "
            + ", ".join(missing)
            + ". Set them with `pulumi config set --secret ucloud:publicKey ...` and "
            "`pulumi config set --secret ucloud:privateKey ...`, or export "
            f"{ENV_PUBLIC_KEY} and {ENV_PRIVATE_KEY}."
        )
    return UCloudCredentials(
        public_key=public_key,
        private_key=private_key,
        base_url=_first(cfg.get(CONFIG_BASE_URL), env.get(ENV_BASE_URL)) or DEFAULT_BASE_URL,
        default_project_id=_first(cfg.get(CONFIG_PROJECT_ID), env.get(ENV_PROJECT_ID)),
    )

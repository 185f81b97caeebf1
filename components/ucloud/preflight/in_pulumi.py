"""The preflight inside the Pulumi program: the same checks before any resource is registered.

`__main__.py` calls `run_if_credentials(cfg)` right after reading the config. With UCloud keys
(stack secrets ucloud:publicKey/privateKey or UCLOUD_PUBLIC_KEY/UCLOUD_PRIVATE_KEY) it checks the
stack live and raises PreflightError with every problem, so `pulumi preview` fails early with
the message `make preflight` prints; otherwise it returns the estimate for the `estimatedCost`
output. Without keys, or under the mock runtime (`make plan`, the tests), it returns None and
calls nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from components.ucloud.credentials import (
    CONFIG_KEYS,
    MissingCredentialsError,
    resolve_credentials,
)
from components.ucloud.preflight import report
from components.ucloud.preflight.pricing import money
from components.ucloud.preflight.run import (
    PREFLIGHT_RETRY,
    PreflightError,
    read_only_api,
    run_preflight,
)
from components.ucloud.preflight.stack import StackConfig, uses_ucloud
from components.ucloud.retry import RetryPolicy

# What `make plan` (offline) can say instead of a number.
OFFLINE_ESTIMATE = "run `make preflight STACK=<stack>` for the estimate (it needs UCloud API keys)"


def under_mocks() -> bool:
    """True inside pulumi.runtime.set_mocks (make plan, tests): never call UCloud there."""
    from pulumi.runtime import settings
    from pulumi.runtime.mocks import MockMonitor

    return isinstance(settings.get_monitor(), MockMonitor)


def _pulumi_config(key: str) -> Any:
    import pulumi

    return pulumi.runtime.get_config(key)


def run_if_credentials(
    cfg: StackConfig,
    *,
    lookup: Callable[[str], Any] | None = None,
    environ: Mapping[str, str] | None = None,
    retry: RetryPolicy = PREFLIGHT_RETRY,
) -> dict[str, Any] | None:
    """The estimate as a plain dict, None when there is nothing to check or no keys.

    Raises PreflightError (the same text as `make preflight`) when the account can't sell
    what the stack asks for.
    """
    if not uses_ucloud(cfg) or under_mocks():
        return None
    get = lookup or _pulumi_config
    try:
        credentials = resolve_credentials({k: get(k) for k in CONFIG_KEYS}, environ)
    except MissingCredentialsError:
        return None
    secrets = (credentials.public_key, credentials.private_key)
    api = read_only_api(credentials, cfg.region, cfg.project_id, retry)
    outcome = run_preflight(cfg, api, with_cost_view=False)
    if outcome.problems:
        problems = [report.redact(p, secrets) for p in outcome.problems]
        raise PreflightError(cfg.stack, problems)
    assert outcome.estimate is not None
    result = outcome.estimate
    return {
        "currency": "CNY",
        "chargeType": result.charge_type,
        "hourly": float(money(result.hourly())),
        "monthly": float(money(result.monthly())),
        "summary": result.summary(),
        "table": report.redact(report.table(result), secrets),
    }

"""Check a stack against the live UCloud account (read-only calls only) and price it.

`python -m tools.preflight --stack dev` (make preflight STACK=dev): reads Pulumi.yaml and
Pulumi.<stack>.yaml like `make plan`, takes keys from UCLOUD_PUBLIC_KEY / UCLOUD_PRIVATE_KEY
(UCLOUD_BASE_URL and UCLOUD_PROJECT_ID honoured), needs no Pulumi CLI. Exit 0: everything can be
bought, the last line is the estimate. Exit 1: the stack has problems (all listed). Exit 2: bad
arguments or no keys.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.errors import ConfigError
from components.ucloud.credentials import (
    ENV_BASE_URL,
    ENV_PRIVATE_KEY,
    ENV_PROJECT_ID,
    ENV_PUBLIC_KEY,
    MissingCredentialsError,
    resolve_credentials,
)
from components.ucloud.preflight import report
from components.ucloud.preflight.run import PREFLIGHT_RETRY, read_only_api, run_preflight
from components.ucloud.preflight.stack import parse_settings, uses_ucloud
from components.ucloud.retry import RetryPolicy
from tools.stack_config import ROOT, load_stack, stacks

MISSING_KEYS = (
    f"preflight needs UCloud API keys: export {ENV_PUBLIC_KEY} and {ENV_PRIVATE_KEY} "
    f"(optional: {ENV_BASE_URL}, {ENV_PROJECT_ID}). Keys stored as stack secrets can't be read "
    "without the Pulumi CLI; a read-only sub-account's keys are enough."
)


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE (lists as JSON: zones='[\"a\"]')")
        out[name] = value
    return out


def main(
    argv: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    root: Path = ROOT,
    retry: RetryPolicy = PREFLIGHT_RETRY,
) -> int:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help=f"one of: {', '.join(stacks(root))}")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="try a changed setting without editing the stack file (repeatable)",
    )
    parser.add_argument("--no-cost-view", action="store_true", help="skip the what-if lines")
    args = parser.parse_args(argv)
    try:
        settings = load_stack(args.stack, root, _overrides(args.set))
    except (FileNotFoundError, ValueError) as error:
        print(f"preflight: {error}", file=sys.stderr)
        return 2
    try:
        cfg = parse_settings(settings.config, args.stack)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    if not uses_ucloud(cfg):
        print(f"stack {args.stack!r} runs on platform {cfg.platform!r}: nothing on UCloud to check")
        print("estimated cost: 0.00 CNY/hour, 0.00 CNY/month")
        return 0
    try:
        credentials = resolve_credentials({}, env)
    except MissingCredentialsError:
        print(MISSING_KEYS, file=sys.stderr)
        return 2
    secrets = (credentials.public_key, credentials.private_key)
    api = read_only_api(credentials, cfg.region, cfg.project_id, retry)
    header = (
        f"preflight of {settings.project}/{args.stack}: region {cfg.region}, zones "
        f"{', '.join(cfg.zones)}, chargeType {cfg.charge_type}, endpoint {credentials.base_url}"
    )
    print(report.redact(header, secrets))
    for warning in cfg.warnings():  # what the config accepts but no source confirms
        print(f"warning: {warning}")
    print()
    outcome = run_preflight(cfg, api, with_cost_view=not args.no_cost_view)
    if outcome.problems:
        print(
            report.redact(report.problems_message(args.stack, outcome.problems), secrets),
            file=sys.stderr,
        )
        return 1
    print(report.redact(outcome.text(), secrets))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fixtures for preflight: a fake UCloud with its catalog, keys that are easy to spot, a runner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from components.ucloud.preflight.stack import StackConfig, parse_settings
from components.ucloud.retry import RetryPolicy
from tests.fake_ucloud import FakeUCloud
from tests.fake_ucloud.catalog_api import Catalog, catalog_of
from tools.preflight import main
from tools.stack_config import load_stack

# Distinctive keys, so a leak into any output is found by a plain substring search.
PUBLIC_KEY = "PUBKEY-preflight-7f3a9c"
PRIVATE_KEY = "PRIVKEY-preflight-d41d8c"
NO_WAIT = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0, sleep=lambda _s: None)


@pytest.fixture
def fake() -> Iterator[FakeUCloud]:
    with FakeUCloud(public_key=PUBLIC_KEY, private_key=PRIVATE_KEY) as server:
        yield server


@pytest.fixture
def catalog(fake: FakeUCloud) -> Catalog:
    return catalog_of(fake.cloud)


@pytest.fixture
def env(fake: FakeUCloud) -> dict[str, str]:
    return {
        "UCLOUD_PUBLIC_KEY": PUBLIC_KEY,
        "UCLOUD_PRIVATE_KEY": PRIVATE_KEY,
        "UCLOUD_BASE_URL": fake.base_url,
    }


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        return self.out.rstrip("\n").splitlines()[-1]


@pytest.fixture
def preflight(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str, environ: dict[str, str] | None = None) -> Run:
        code = main(list(argv), env if environ is None else environ, retry=NO_WAIT)
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def stack_cfg(stack: str, **overrides: Any) -> StackConfig:
    return parse_settings(load_stack(stack, overrides=overrides).config, stack)


def money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))

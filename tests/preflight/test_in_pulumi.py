"""The hook __main__.py calls during `pulumi preview`: the same checks, the estimate as a dict."""

from __future__ import annotations

import pulumi
import pytest

from components.ucloud.preflight.in_pulumi import run_if_credentials
from components.ucloud.preflight.run import PreflightError
from tests.fake_ucloud import FakeUCloud
from tests.fake_ucloud.catalog_api import Catalog
from tests.preflight.conftest import NO_WAIT, PRIVATE_KEY, PUBLIC_KEY, stack_cfg
from tools.mock_runtime import run_program


def no_config(_key: str) -> None:
    return None


def test_without_credentials_it_returns_none_and_calls_nothing(fake: FakeUCloud) -> None:
    assert run_if_credentials(stack_cfg("dev"), lookup=no_config, environ={}) is None
    assert fake.calls == []


def test_with_keys_in_the_environment_it_returns_what_make_preflight_prints(
    fake: FakeUCloud, env: dict[str, str], preflight
) -> None:
    result = run_if_credentials(stack_cfg("dev"), lookup=no_config, environ=env, retry=NO_WAIT)
    assert result is not None
    cli = preflight("--stack", "dev", "--no-cost-view")
    assert result["summary"] == cli.last_line
    assert result["summary"] == (
        f"estimated cost: {result['hourly']:.2f} CNY/hour, {result['monthly']:.2f} CNY/month"
    )
    assert result["currency"] == "CNY" and result["chargeType"] == "Dynamic"
    assert result["table"].splitlines()[-1] == result["summary"]
    assert all(a.startswith(("Describe", "Get", "List")) for a, _ in fake.calls)


def test_keys_from_the_stack_config_work_too(fake: FakeUCloud) -> None:
    config = {
        "ucloud:publicKey": PUBLIC_KEY,
        "ucloud:privateKey": PRIVATE_KEY,
        "ucloud:baseUrl": fake.base_url,
    }
    result = run_if_credentials(stack_cfg("dev"), lookup=config.get, environ={}, retry=NO_WAIT)
    assert result is not None and result["hourly"] > 0


def test_problems_fail_with_the_message_make_preflight_prints(
    catalog: Catalog, env: dict[str, str], preflight
) -> None:
    catalog.sell_out("T4", "cn-bj2-05")
    with pytest.raises(PreflightError) as caught:
        run_if_credentials(stack_cfg("dev"), lookup=no_config, environ=env, retry=NO_WAIT)
    cli = preflight("--stack", "dev")
    assert str(caught.value) == cli.err.rstrip("\n")
    assert "llm-uk8s:gpuType = 'T4': sold out in zone cn-bj2-05" in str(caught.value)
    assert PUBLIC_KEY not in str(caught.value) and PRIVATE_KEY not in str(caught.value)


def test_a_local_stack_is_not_checked(fake: FakeUCloud, env: dict[str, str]) -> None:
    assert run_if_credentials(stack_cfg("local"), lookup=no_config, environ=env) is None
    assert fake.calls == []


def test_under_the_mock_runtime_it_never_calls_ucloud(
    fake: FakeUCloud, env: dict[str, str]
) -> None:
    """`make plan` and the stack tests run the program under mocks, keys or not."""
    cfg = stack_cfg("dev")
    seen: list[object] = []

    def program() -> None:
        seen.append(run_if_credentials(cfg, environ=env, retry=NO_WAIT))

    try:
        run_program(program)
    finally:
        pulumi.runtime.settings.reset_options()
    assert seen == [None]
    assert fake.calls == []

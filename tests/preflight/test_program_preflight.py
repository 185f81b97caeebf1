"""The real program (`__main__.py`) with UCloud keys: what `pulumi preview` does before it
registers anything. The mock runtime stands in for the engine; the guard that keeps `make plan`
offline is lifted, so the program talks to the fake UCloud API as it would to UCloud."""

from __future__ import annotations

import pytest

from components.ucloud.preflight import in_pulumi
from tests.fake_ucloud.catalog_api import Catalog
from tests.preflight.conftest import PRIVATE_KEY, PUBLIC_KEY
from tools.plan import plan_stack


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    monkeypatch.setattr(in_pulumi, "under_mocks", lambda: False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_preview_with_keys_exports_the_estimate(live: None, fake) -> None:  # type: ignore[no-untyped-def]
    plan = plan_stack("dev")
    estimate = plan.outputs["estimatedCost"]
    assert estimate["summary"].startswith("estimated cost: ")
    assert estimate["hourly"] > 0 and estimate["monthly"] == pytest.approx(
        estimate["hourly"] * 730, abs=0.01
    )
    sent = {action for action, _ in fake.calls}
    assert sent and all(a.startswith(("Describe", "Get", "List")) for a in sent)


def test_preview_with_keys_fails_before_registering_anything(live: None, catalog: Catalog) -> None:
    catalog.sell_out("T4", "cn-bj2-05")
    sold_out = r"llm-uk8s:gpuType = 'T4': sold out in zone cn-bj2-05"
    with pytest.raises(Exception, match=sold_out) as e:
        plan_stack("dev")
    assert type(e.value).__name__ == "RunError"  # the message alone, no traceback
    assert PUBLIC_KEY not in str(e.value) and PRIVATE_KEY not in str(e.value)


def test_preflight_false_skips_the_checks(live: None, catalog: Catalog, fake) -> None:  # type: ignore[no-untyped-def]
    catalog.sell_out("T4", "cn-bj2-05")
    plan = plan_stack("dev", overrides={"preflight": False})
    assert "make preflight" in plan.outputs["estimatedCost"]
    assert fake.calls == []

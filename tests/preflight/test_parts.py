"""The pieces on their own: hour/month conversions, matching rules, the read-only guard."""

from __future__ import annotations

from decimal import Decimal

import pytest

from components.ucloud.credentials import UCloudCredentials
from components.ucloud.preflight.availability import memory_matches, version_offered
from components.ucloud.preflight.pricing import CostLine, Estimate
from components.ucloud.preflight.readonly import WriteRefusedError, is_read_only
from components.ucloud.preflight.run import read_only_api
from components.ucloud.preflight.stack import plan_from_config
from tests.fake_ucloud import FakeUCloud
from tests.preflight.conftest import NO_WAIT, PRIVATE_KEY, PUBLIC_KEY, stack_cfg


def test_dynamic_prices_are_hourly_and_a_month_is_730_hours() -> None:
    result = Estimate("Dynamic", [CostLine("host", "z", 3, Decimal("0.42"), "hour")])
    assert result.hourly() == Decimal("1.26")
    assert result.monthly() == Decimal("919.80")
    assert result.summary() == "estimated cost: 1.26 CNY/hour, 919.80 CNY/month"


def test_month_and_year_prices_give_the_hour_as_the_month_over_730() -> None:
    month = Estimate("Month", [CostLine("host", "z", 2, Decimal("365"), "month")])
    assert month.monthly() == Decimal(730) and month.hourly() == Decimal(1)
    year = Estimate("Year", [CostLine("host", "z", 1, Decimal("8760"), "year")])
    assert year.monthly() == Decimal(730) and year.hourly() == Decimal(1)
    assert year.summary() == "estimated cost: 1.00 CNY/hour, 730.00 CNY/month"


@pytest.mark.parametrize(
    ("wanted", "offered", "ok"),
    [
        ("1.30", ["1.28.15", "1.30.6"], True),
        ("1.30.6", ["1.30.6"], True),
        ("1.30.3", ["1.30.6"], False),
        ("1.3", ["1.30.6"], False),
        ("1.31", ["1.30.6"], False),
    ],
)
def test_a_minor_version_matches_any_of_its_patches(wanted, offered, ok) -> None:
    assert version_offered(wanted, offered) is ok


def test_memory_matches_in_mb_or_in_gb() -> None:
    assert memory_matches(32768, [16, 32, 64])
    assert memory_matches(32768, [16384, 32768])
    assert not memory_matches(20480, [16, 32, 64])


@pytest.mark.parametrize(
    ("action", "ok"),
    [
        ("DescribeAvailableInstanceTypes", True),
        ("GetUHostInstancePrice", True),
        ("ListUK8SClusterV2", True),
        ("CreateUK8SClusterV2", False),
        ("AddUK8SUHostNode", False),
        ("DeleteNATGW", False),
        ("AllocateEIP", False),
        ("Getaway", False),
    ],
)
def test_only_describe_get_and_list_count_as_read_only(action, ok) -> None:
    assert is_read_only(action) is ok


def test_the_guard_refuses_writes_before_anything_is_sent() -> None:
    with FakeUCloud(public_key=PUBLIC_KEY, private_key=PRIVATE_KEY) as fake:
        credentials = UCloudCredentials(PUBLIC_KEY, PRIVATE_KEY, base_url=fake.base_url)
        api = read_only_api(credentials, "cn-bj2", "org-x", NO_WAIT)
        with pytest.raises(WriteRefusedError):
            api.call("uk8s", "add_uk8s_uhost_node", {"ClusterId": "uk8s-1"})
        with pytest.raises(WriteRefusedError):
            api.invoke("CreateUK8SClusterV2", {})
        assert fake.calls == []
        assert api.call("uaccount", "get_region", {})["Regions"]
        assert [a for a, _ in fake.calls] == ["GetRegion"]


def test_the_plan_places_hosts_as_the_program_does() -> None:
    one_zone = plan_from_config(stack_cfg("dev"))
    assert [(g.zone, g.count) for g in one_zone.masters] == [("cn-bj2-05", 3)]
    three = plan_from_config(stack_cfg("prod", gpuNodeCount="4"))
    assert [(g.zone, g.count) for g in three.masters] == [
        ("cn-bj2-02", 1),
        ("cn-bj2-03", 1),
        ("cn-bj2-05", 1),
    ]
    assert [(g.zone, g.count) for g in three.gpu_nodes] == [
        ("cn-bj2-02", 2),
        ("cn-bj2-03", 1),
        ("cn-bj2-05", 1),
    ]
    assert three.nat_operator == "Bgp" and three.load_balancer == "inner"

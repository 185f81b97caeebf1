"""`make preflight` as a user runs it, against the fake UCloud API and its catalog."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.fake_ucloud import FakeUCloud
from tests.fake_ucloud.catalog_api import Catalog
from tests.preflight.conftest import DEV_FITS, PRIVATE_KEY, PROD_FITS, PUBLIC_KEY, money

ROOT = Path(__file__).resolve().parents[2]
H = Decimal(730)


def dev_hourly(book, gpu_type: str = "T4", gpu_nodes: int = 1, charge: str = "Dynamic") -> Decimal:
    """What the fake charges for dev (3 masters N 2C/4G, T4 nodes 8C/32G, 500 GB Basic UFS,
    a 20 Mbps BGP EIP), summed by hand from the fake's price book."""
    return (
        book.uhost(charge, 2, 4096) * 3
        + book.uhost(charge, 8, 32768, gpu_type, 1) * gpu_nodes
        + book.ufs_fen(charge, 500, "Basic") / 100
        + book.eip(charge, 20)
    )


def test_a_fitting_stack_passes_and_its_total_is_the_fakes_prices_summed(preflight, catalog):
    run = preflight("--stack", "dev", *DEV_FITS)
    assert run.code == 0, run.err
    hourly = dev_hourly(catalog.prices)
    assert run.last_line == (
        f"estimated cost: {money(hourly)} CNY/hour, {money(hourly * H)} CNY/month"
    )
    assert "ok           1 GPU node(s) G T4 x1, 8 CPU, 32768 MB" in run.out


def test_a_monthly_stack_is_priced_per_month_and_its_hour_is_the_month_over_730(preflight, catalog):
    run = preflight("--stack", "prod", *PROD_FITS)
    assert run.code == 0, run.err
    book = catalog.prices
    monthly = (
        book.uhost("Month", 4, 8192) * 3
        + book.uhost("Month", 16, 131072, "A800", 1) * 2
        + book.ufs_fen("Month", 1000, "Basic") / 100
        + book.eip("Month", 20)
    )
    assert run.last_line == (
        f"estimated cost: {money(monthly / H)} CNY/hour, {money(monthly)} CNY/month"
    )
    assert "not priced: NAT gateway" in run.out
    assert "not priced: the inference Service's inner ULB" in run.out


def test_a_yearly_stack_spreads_the_year_over_twelve_months(preflight, catalog):
    run = preflight("--stack", "dev", *DEV_FITS, "--set", "chargeType=Year")
    assert run.code == 0, run.err
    monthly = dev_hourly(catalog.prices, charge="Year") / 12
    assert run.last_line == (
        f"estimated cost: {money(monthly / H)} CNY/hour, {money(monthly)} CNY/month"
    )


def test_the_cost_view_prices_the_same_stack_with_one_setting_changed(preflight, catalog):
    run = preflight("--stack", "dev", *DEV_FITS)
    book = catalog.prices
    month = dev_hourly(book, charge="Month")
    two_nodes = dev_hourly(book, gpu_nodes=2)
    t4s = dev_hourly(book, gpu_type="T4S")  # T4S is sold in cn-bj2-05 in the same shape
    lines = run.out.splitlines()

    def line(label: str) -> str:
        return next(x for x in lines if x.strip().startswith(label))

    assert line("chargeType Month").endswith(
        f"{money(month / H)} CNY/hour, {money(month)} CNY/month"
    )
    assert line("gpuNodeCount 2 (now 1)").endswith(
        f"{money(two_nodes)} CNY/hour, {money(two_nodes * H)} CNY/month"
    )
    assert line("gpuType T4S (now T4)").endswith(
        f"{money(t4s)} CNY/hour, {money(t4s * H)} CNY/month"
    )
    # The view comes before the table: the output still ends with the estimate.
    assert run.last_line.startswith("estimated cost: ")


def test_a_zone_outside_the_region_is_refused_with_the_valid_zones(preflight):
    run = preflight("--stack", "prod")  # Pulumi.prod.yaml has cn-bj2-04, not a UCloud zone
    assert run.code == 1
    assert "llm-uk8s:zones = ['cn-bj2-02', 'cn-bj2-03', 'cn-bj2-04']: cn-bj2-04 not in region" in (
        run.err
    )
    assert "its zones: cn-bj2-02, cn-bj2-03, cn-bj2-05" in run.err
    assert "estimated cost" not in run.out


def test_a_gpu_type_not_sold_in_the_zone_names_the_key_and_where_it_is_sold(preflight):
    run = preflight("--stack", "dev")  # Pulumi.dev.yaml: T4 in cn-bj2-02 (UCloud sells it in -05)
    assert run.code == 1
    assert "llm-uk8s:gpuType = 'T4': not sold in zone cn-bj2-02" in run.err
    assert "GPU types sold there: 4090, A800, H20, P40, T4S, V100S" in run.err
    assert "zones of cn-bj2 that sell T4: cn-bj2-05" in run.err


def test_a_sold_out_gpu_type_is_refused(preflight, catalog: Catalog):
    catalog.sell_out("T4", "cn-bj2-05")
    run = preflight("--stack", "dev", *DEV_FITS)
    assert run.code == 1
    assert "llm-uk8s:gpuType = 'T4': sold out in zone cn-bj2-05 (Status Soldout" in run.err
    assert "where T4 is on sale: none" in run.err


def test_a_kubernetes_version_uk8s_does_not_offer_is_refused(preflight):
    run = preflight("--stack", "dev", *DEV_FITS, "--set", "kubernetesVersion=1.27")
    assert run.code == 1
    assert (
        "llm-uk8s:kubernetesVersion = '1.27': UK8S does not offer it in cn-bj2; versions "
        "offered: 1.26.7, 1.28.15, 1.30.6"
    ) in run.err


def test_every_problem_comes_in_one_message(preflight, catalog: Catalog):
    catalog.sell_out("T4", "cn-bj2-05")
    run = preflight(
        "--stack", "dev", *DEV_FITS, "--set", "kubernetesVersion=1.29", "--set", "masterCpu=32",
        "--set", "masterMemoryMb=8192",
    )
    assert run.code == 1
    assert "found 3 problem(s)" in run.err
    assert "llm-uk8s:gpuType" in run.err and "llm-uk8s:kubernetesVersion" in run.err
    assert "llm-uk8s:masterMemoryMb = 8192: N with 32 CPUs in zone cn-bj2-05 is sold with" in (
        run.err
    )


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("gpuNodeCpu=6", "llm-uk8s:gpuNodeCpu = 6: T4 in zone cn-bj2-05 is sold with 4, 8, 16, 32"),
        ("gpuNodeMemoryMb=20480", "llm-uk8s:gpuNodeMemoryMb = 20480: T4 with 8 CPUs in zone "
         "cn-bj2-05 is sold with 16384, 32768, 65536 MB"),
        ("gpusPerNode=8", "llm-uk8s:gpusPerNode = 8: T4 in zone cn-bj2-05 comes with 1, 2, 4"),
        ("masterMachineType=O", "llm-uk8s:masterMachineType = 'O': masters boot from CLOUD_SSD "
         "(the program's choice), which O in zone cn-bj2-05 does not offer; boot disks offered: "
         "CLOUD_RSSD"),
        ("region=cn-sh2", "llm-uk8s:zones = ['cn-bj2-05']"),
    ],
)
def test_host_shapes_the_zone_does_not_sell_are_refused(preflight, setting, expected):
    run = preflight("--stack", "dev", *DEV_FITS, "--set", setting)
    assert run.code == 1
    assert expected in run.err


def test_an_unknown_region_is_refused_with_the_accounts_regions(preflight):
    run = preflight("--stack", "dev", "--set", "region=cn-xx9", "--set", 'zones=["cn-xx9-01"]')
    assert run.code == 1
    assert "llm-uk8s:region = 'cn-xx9': not a region of this account; regions: cn-bj2, cn-gd, " in (
        run.err
    )


def test_a_gpu_type_without_a_uk8s_node_image_is_refused(preflight, catalog: Catalog):
    catalog.no_image_for.add("T4")
    run = preflight("--stack", "dev", *DEV_FITS)
    assert run.code == 1
    assert "llm-uk8s:gpuType = 'T4': UK8S has no GPU node image for it in zone cn-bj2-05" in run.err


def test_a_node_image_id_uk8s_does_not_list_is_refused(preflight):
    run = preflight("--stack", "dev", *DEV_FITS, "--set", "gpuNodeImageId=uimage-nope")
    assert run.code == 1
    assert "llm-uk8s:gpuNodeImageId = 'uimage-nope': not a UK8S node image for T4" in run.err
    assert "images: uimage-gpu-t4" in run.err


def test_missing_credentials_are_refused_naming_the_variables(preflight, fake: FakeUCloud):
    run = preflight("--stack", "dev", environ={"UCLOUD_BASE_URL": fake.base_url})
    assert run.code == 2
    for name in ("UCLOUD_PUBLIC_KEY", "UCLOUD_PRIVATE_KEY", "UCLOUD_BASE_URL", "UCLOUD_PROJECT_ID"):
        assert name in run.err
    assert "Traceback" not in run.err + run.out
    assert fake.calls == []


def test_the_project_comes_from_the_environment_or_the_accounts_default(preflight, env, fake):
    assert preflight("--stack", "dev", *DEV_FITS).code == 0
    versions = [p for a, p in fake.calls if a == "GetUK8SVersions"]
    assert versions and versions[0]["ProjectId"] == "org-fakedefault"
    assert fake.count("GetProjectList") == 1
    fake.calls.clear()
    assert preflight("--stack", "dev", *DEV_FITS,
                     environ={**env, "UCLOUD_PROJECT_ID": "org-fakeother"}).code == 0
    assert fake.count("GetProjectList") == 0
    assert {p.get("ProjectId") for _, p in fake.calls} == {"org-fakeother"}


def test_only_read_only_actions_are_ever_sent(preflight, catalog: Catalog, fake: FakeUCloud):
    preflight("--stack", "dev", *DEV_FITS)  # passes, with the cost view's variants
    preflight("--stack", "prod", *PROD_FITS)
    preflight("--stack", "dev")  # fails
    catalog.sell_out("T4", "cn-bj2-05")
    preflight("--stack", "dev", *DEV_FITS)
    actions = {action for action, _ in fake.calls}
    assert {
        "GetRegion", "DescribeAvailableInstanceTypes", "GetUHostInstancePrice",
        "DescribeUFSVolumePrice", "GetEIPPrice", "GetUK8SVersions", "DescribeUK8SImage",
    } <= actions
    assert all(a.startswith(("Describe", "Get", "List")) for a in actions), actions


def test_no_key_appears_in_any_output(preflight, fake: FakeUCloud):
    runs = [preflight("--stack", "dev", *DEV_FITS), preflight("--stack", "prod")]
    # Even an error message that quotes a key (no real API does) is redacted.
    fake.fail_next("GetRegion", code=172, message=f"User {PUBLIC_KEY} / {PRIVATE_KEY} unknown")
    runs.append(preflight("--stack", "dev", *DEV_FITS))
    assert runs[-1].code == 1 and "[redacted]" in runs[-1].err
    for run in runs:
        for key in (PUBLIC_KEY, PRIVATE_KEY):
            assert key not in run.out and key not in run.err


def test_a_local_stack_has_nothing_to_check(preflight, fake: FakeUCloud):
    run = preflight("--stack", "local")
    assert run.code == 0
    assert run.last_line == "estimated cost: 0.00 CNY/hour, 0.00 CNY/month"
    assert fake.calls == []


def test_the_command_runs_as_make_preflight_does(env, catalog):
    done = subprocess.run(
        [sys.executable, "-m", "tools.preflight", "--stack", "dev", *DEV_FITS],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    hourly = dev_hourly(catalog.prices)
    assert done.stdout.rstrip().splitlines()[-1] == (
        f"estimated cost: {money(hourly)} CNY/hour, {money(hourly * H)} CNY/month"
    )
    missing = subprocess.run(
        [sys.executable, "-m", "tools.preflight", "--stack", "dev"], cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("UCLOUD_")},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert missing.returncode == 2 and "UCLOUD_PUBLIC_KEY" in missing.stderr
    assert "Traceback" not in missing.stderr

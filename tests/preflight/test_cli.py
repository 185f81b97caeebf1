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
from tests.fake_ucloud.uk8s_api import K8S_VERSIONS
from tests.preflight.conftest import PRIVATE_KEY, PUBLIC_KEY, money

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
    run = preflight("--stack", "dev")
    assert run.code == 0, run.err
    hourly = dev_hourly(catalog.prices)
    assert run.last_line == (
        f"estimated cost: {money(hourly)} CNY/hour, {money(hourly * H)} CNY/month"
    )
    assert "ok           1 GPU node(s) G T4 x1, 8 CPU, 32768 MB" in run.out


def test_a_monthly_stack_is_priced_per_month_and_its_hour_is_the_month_over_730(preflight, catalog):
    run = preflight("--stack", "prod")
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
    run = preflight("--stack", "dev", "--set", "chargeType=Year")
    assert run.code == 0, run.err
    monthly = dev_hourly(catalog.prices, charge="Year") / 12
    assert run.last_line == (
        f"estimated cost: {money(monthly / H)} CNY/hour, {money(monthly)} CNY/month"
    )


def test_the_cost_view_prices_the_same_stack_with_one_setting_changed(preflight, catalog):
    run = preflight("--stack", "dev")
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


def test_a_config_the_vocabulary_refuses_gets_the_configs_own_message(preflight, fake):
    """cn-bj2-04 is no UCloud zone (API regionlist.md): components/stack/config.py refuses it
    offline, with the one message `pulumi preview` gives, before any call."""
    run = preflight("--stack", "prod", "--set", 'zones=["cn-bj2-02", "cn-bj2-04"]')
    assert run.code == 1
    assert run.err.startswith("invalid stack configuration:\n  - llm-uk8s:zones")
    assert "cn-bj2-04" in run.err
    assert "Traceback" not in run.err + run.out
    assert fake.calls == []


def test_a_key_under_a_misspelt_prefix_is_refused_as_the_program_refuses_it(preflight, fake):
    run = preflight("--stack", "dev", "--set", "llm_uk8s:gpuType=A100")
    assert run.code == 1
    assert "llm_uk8s:gpuType is not read: the project prefix is llm-uk8s:" in run.err
    assert fake.calls == []


def test_a_zone_the_account_lacks_is_refused_with_the_accounts_zones(preflight, catalog):
    catalog.regions["cn-bj2"] = ("cn-bj2-02", "cn-bj2-03")  # an account without cn-bj2-05
    run = preflight("--stack", "prod")
    assert run.code == 1
    assert (
        "llm-uk8s:zones = ['cn-bj2-02', 'cn-bj2-03', 'cn-bj2-05']: cn-bj2-05 not open to this "
        "account in region cn-bj2 (GetRegion); its zones there: cn-bj2-02, cn-bj2-03"
    ) in run.err
    assert "estimated cost" not in run.out


def test_a_gpu_type_not_sold_in_the_zone_names_the_key_and_where_it_is_sold(preflight, catalog):
    # No UCloud page lists 4090's zones, so the config accepts it with a warning; the account
    # (the fake) then says where it is sold.
    catalog.stop_selling("4090", "cn-bj2-05")
    run = preflight("--stack", "dev", "--set", "gpuType=4090")
    assert run.code == 1
    assert "llm-uk8s:gpuType = '4090': not sold in zone cn-bj2-05" in run.err
    assert "GPU types sold there: A800, H20, T4, T4S" in run.err
    assert "zones of cn-bj2 that sell 4090: cn-bj2-02, cn-bj2-03" in run.err
    assert "warning: llm-uk8s:gpuType = '4090': no UCloud page lists the zones" in run.out


def test_a_sold_out_gpu_type_is_refused(preflight, catalog: Catalog):
    catalog.sell_out("T4", "cn-bj2-05")
    run = preflight("--stack", "dev")
    assert run.code == 1
    assert "llm-uk8s:gpuType = 'T4': sold out in zone cn-bj2-05 (Status Soldout" in run.err
    assert "where T4 is on sale: none" in run.err


def test_a_kubernetes_version_uk8s_does_not_offer_is_refused(preflight, fake: FakeUCloud):
    fake.cloud.k8s_versions = ("1.28.15", "1.32.5")  # no 1.30.x in this account's list
    run = preflight("--stack", "dev")  # kubernetesVersion "1.30"
    assert run.code == 1
    assert (
        "llm-uk8s:kubernetesVersion = '1.30': UK8S does not offer it in cn-bj2; versions "
        "offered: 1.28.15, 1.32.5"
    ) in run.err


def test_a_minor_version_passes_with_the_patches_uk8s_offers(preflight):
    run = preflight("--stack", "dev")
    assert run.code == 0, run.err
    patches = ", ".join(v for v in K8S_VERSIONS if v.startswith("1.30."))
    assert f"kubernetesVersion 1.30: offered by UK8S ({patches})" in run.out


def test_every_problem_comes_in_one_message(preflight, catalog: Catalog):
    catalog.sell_out("T4", "cn-bj2-05")
    run = preflight(
        "--stack",
        "dev",
        "--set",
        "kubernetesVersion=1.29",
        "--set",
        "masterCpu=32",
        "--set",
        "masterMemoryMb=8192",
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
        (
            "gpuNodeMemoryMb=40960",
            "llm-uk8s:gpuNodeMemoryMb = 40960: T4 with 8 CPUs in zone "
            "cn-bj2-05 is sold with 16384, 32768, 65536 MB",
        ),
        ("gpusPerNode=8", "llm-uk8s:gpusPerNode = 8: T4 in zone cn-bj2-05 comes with 1, 2, 4"),
        (
            "masterMachineType=OS",
            "llm-uk8s:masterMachineType = 'OS': not sold in zone cn-bj2-05 "
            "(the masters' zone); machine types sold there: C, N, O; zones of cn-bj2 that sell OS: "
            "none",
        ),
    ],
)
def test_host_shapes_the_zone_does_not_sell_are_refused(preflight, setting, expected):
    run = preflight("--stack", "dev", "--set", setting)
    assert run.code == 1
    assert expected in run.err


def test_the_boot_disk_is_the_programs_choice_for_the_machine_family(preflight, fake):
    """O hosts boot from CLOUD_RSSD (vocabulary.boot_disk_type_for): checked and priced so."""
    run = preflight("--stack", "dev", "--set", "masterMachineType=O")
    assert run.code == 0, run.err
    assert "3 master(s) O 2 CPU, 4096 MB, boot CLOUD_RSSD: sold in cn-bj2-05" in run.out
    disks = {(p["MachineType"], p["Disks.0.Type"]) for p in fake.sent("GetUHostInstancePrice")}
    assert ("O", "CLOUD_RSSD") in disks and ("G", "CLOUD_SSD") in disks


def test_a_boot_disk_the_zone_does_not_offer_for_the_type_is_refused(preflight, catalog):
    catalog.offer("N", "cn-bj2-05").boot_disks = ("CLOUD_RSSD",)
    run = preflight("--stack", "dev")
    assert run.code == 1
    assert (
        "llm-uk8s:masterMachineType = 'N': masters boot from CLOUD_SSD (the program's choice), "
        "which N in zone cn-bj2-05 does not offer; boot disks offered: CLOUD_RSSD"
    ) in run.err


def test_a_region_the_account_lacks_is_refused_with_the_accounts_regions(preflight):
    # cn-bj1 is a UCloud region (API regionlist.md) this fake account has no access to.
    run = preflight(
        "--stack",
        "dev",
        "--set",
        "region=cn-bj1",
        "--set",
        'zones=["cn-bj1-01"]',
        "--set",
        "gpuType=4090",
    )
    assert run.code == 1, run.err
    assert (
        "llm-uk8s:region = 'cn-bj1': not a region of this account; regions: cn-bj2, cn-gd, "
        "cn-sh2, cn-wlcb, hk"
    ) in run.err


def test_a_gpu_type_without_a_uk8s_node_image_is_refused(preflight, fake: FakeUCloud):
    fake.cloud.gpu_types_without_node_image.add("T4")
    run = preflight("--stack", "dev")
    assert run.code == 1
    assert "llm-uk8s:gpuType = 'T4': UK8S has no GPU node image for it in zone cn-bj2-05" in run.err


def test_a_node_image_id_uk8s_does_not_list_is_refused(preflight):
    run = preflight("--stack", "dev", "--set", "gpuNodeImageId=uimage-nope")
    assert run.code == 1
    assert "llm-uk8s:gpuNodeImageId = 'uimage-nope': not a UK8S node image for T4" in run.err
    # The fake's T4 images (tests/fake_ucloud/uk8s_api.py _images: Ubuntu 22.04/24.04, Centos).
    assert "images: uimage-gpu03, uimage-gpu04, uimage-gpu05" in run.err


def test_missing_credentials_are_refused_naming_the_variables(preflight, fake: FakeUCloud):
    run = preflight("--stack", "dev", environ={"UCLOUD_BASE_URL": fake.base_url})
    assert run.code == 2
    for name in ("UCLOUD_PUBLIC_KEY", "UCLOUD_PRIVATE_KEY", "UCLOUD_BASE_URL", "UCLOUD_PROJECT_ID"):
        assert name in run.err
    assert "Traceback" not in run.err + run.out
    assert fake.calls == []


def test_the_project_comes_from_the_environment_or_the_accounts_default(preflight, env, fake):
    """As for `pulumi up` (components/ucloud/api.py): without a configured project only the
    actions whose SDK schema requires one (GetUK8SVersions) get the default project."""
    assert preflight("--stack", "dev").code == 0
    assert {a for a, p in fake.calls if p.get("ProjectId")} == {"GetUK8SVersions"}
    assert {p["ProjectId"] for p in fake.sent("GetUK8SVersions")} == {"org-fake-default"}
    assert fake.count("GetProjectList") == 1
    fake.calls.clear()
    run = preflight("--stack", "dev", environ={**env, "UCLOUD_PROJECT_ID": "org-fake-other"})
    assert run.code == 0
    assert fake.count("GetProjectList") == 0
    assert {p.get("ProjectId") for _, p in fake.calls} == {"org-fake-other"}


def test_no_project_at_all_is_refused_naming_the_key(preflight, fake: FakeUCloud):
    fake.cloud.projects = [("org-fake-other", False)]  # GetProjectList names no default
    run = preflight("--stack", "dev")
    assert run.code == 1
    assert "llm-uk8s:projectId is not set and the account names no default project" in run.err
    assert "Traceback" not in run.err + run.out


def test_only_read_only_actions_are_ever_sent(preflight, catalog: Catalog, fake: FakeUCloud):
    preflight("--stack", "dev")  # passes, with the cost view's variants
    preflight("--stack", "prod")
    preflight("--stack", "dev", "--set", "gpuNodeImageId=uimage-nope")  # fails
    catalog.sell_out("T4", "cn-bj2-05")
    preflight("--stack", "dev")
    actions = {action for action, _ in fake.calls}
    assert {
        "GetRegion",
        "DescribeAvailableInstanceTypes",
        "GetUHostInstancePrice",
        "DescribeUFSVolumePrice",
        "GetEIPPrice",
        "GetUK8SVersions",
        "DescribeUK8SImage",
    } <= actions
    assert all(a.startswith(("Describe", "Get", "List")) for a in actions), actions


def test_no_key_appears_in_any_output(preflight, fake: FakeUCloud):
    runs = [preflight("--stack", "dev"), preflight("--stack", "prod")]
    # Even an error message that quotes a key (no real API does) is redacted.
    fake.fail_next("GetRegion", code=172, message=f"User {PUBLIC_KEY} / {PRIVATE_KEY} unknown")
    runs.append(preflight("--stack", "dev"))
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
        [sys.executable, "-m", "tools.preflight", "--stack", "dev"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    hourly = dev_hourly(catalog.prices)
    assert done.stdout.rstrip().splitlines()[-1] == (
        f"estimated cost: {money(hourly)} CNY/hour, {money(hourly * H)} CNY/month"
    )
    missing = subprocess.run(
        [sys.executable, "-m", "tools.preflight", "--stack", "dev"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("UCLOUD_")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 2 and "UCLOUD_PUBLIC_KEY" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_serve_fake_runs_the_preflight_against_a_fake_of_its_own():
    """The by-hand route (tests/preflight/serve_fake.py): the CLI gets only UCLOUD_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("UCLOUD_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.preflight.serve_fake",
            "--",
            sys.executable,
            "-m",
            "tools.preflight",
            "--stack",
            "dev",
            "--no-cost-view",
        ],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    hourly = dev_hourly(Catalog().prices)
    assert done.stdout.rstrip().splitlines()[-1] == (
        f"estimated cost: {money(hourly)} CNY/hour, {money(hourly * H)} CNY/month"
    )

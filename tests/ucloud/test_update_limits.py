"""In-place changes UCloud would refuse are refused before any call: UFS growth steps
(ufs-api/extend_ufs_volume.md) and EIP bandwidth (unet-api/modify_eip_bandwidth.md)."""

from __future__ import annotations

import pytest

from components.ucloud.base import Timings
from components.ucloud.eip import EipProvider, bandwidth_update_problem
from components.ucloud.errors import InvalidUpdateError
from components.ucloud.ufs_volume import UfsVolumeProvider, growth_problem
from tests.fake_ucloud import FakeUCloud
from tests.ucloud.conftest import eip_inputs, volume_inputs

# ---- UFS growth --------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["cn-bj2", "cn-sh2", "cn-gd", "cn-bj1", "cn-sh", "cn-gd2"])
def test_basic_volumes_in_beijing_shanghai_guangzhou_grow_to_multiples_of_1024(
    region: str,
) -> None:
    assert growth_problem(region, "Basic", 500, 1024) is None
    assert growth_problem(region, "Basic", 1024, 3072) is None
    problem = growth_problem(region, "Basic", 500, 600)
    assert problem and "size: got 600" in problem and "multiple of 1024" in problem
    assert region in problem and "e.g. 1024" in problem


@pytest.mark.parametrize("region", ["hk", "cn-wlcb", "sg"])
def test_other_regions_grow_in_100_gb_steps(region: str) -> None:
    assert growth_problem(region, "Basic", 500, 600) is None
    problem = growth_problem(region, "Basic", 500, 650)
    assert problem and "multiple of 100" in problem


def test_advanced_volumes_grow_in_100_gb_steps_everywhere() -> None:
    assert growth_problem("cn-bj2", "Advanced", 100, 200) is None


def test_growth_is_bounded_and_never_shrinks() -> None:
    assert growth_problem("cn-bj2", "Basic", 1024, 20 * 1024) is None
    too_big = growth_problem("cn-bj2", "Basic", 1024, 21 * 1024)
    assert too_big and "to 20480 GB" in too_big
    shrink = growth_problem("cn-bj2", "Basic", 2048, 1024)
    assert shrink and "cannot shrink" in shrink
    assert growth_problem("cn-bj2", "Basic", 500, 500) is None


def test_a_refused_growth_calls_nothing_and_leaves_the_volume(
    ucloud_env: FakeUCloud, timings: Timings
) -> None:
    provider = UfsVolumeProvider(timings)
    volume = provider.create(volume_inputs())  # 500 GB Basic in cn-bj2
    with pytest.raises(InvalidUpdateError, match=r"size: got 800.*multiple of 1024"):
        provider.update(volume.id, volume.outs, volume_inputs(size=800, name="renamed"))
    assert ucloud_env.count("ExtendUFSVolume") == 0
    assert ucloud_env.count("UpdateUFSVolumeInfo") == 0
    assert ucloud_env.resources("ufs")[volume.id].fields["Size"] == 500


def test_the_fake_refuses_the_same_growth_with_a_parameter_error(
    ucloud_env: FakeUCloud, timings: Timings
) -> None:
    """Without our check, UCloud's answer is a permanent error: not retried."""
    volume = UfsVolumeProvider(timings).create(volume_inputs())
    api = UfsVolumeProvider(timings).api(volume.outs)
    with pytest.raises(Exception, match="ExtendUFSVolume - 230"):
        api.call("ufs", "extend_ufs_volume", {"VolumeId": volume.id, "Size": 800})
    assert ucloud_env.count("ExtendUFSVolume") == 1


def test_growth_in_hong_kong_by_100_gb(ucloud_env: FakeUCloud, timings: Timings) -> None:
    provider = UfsVolumeProvider(timings)
    volume = provider.create(volume_inputs(region="hk"))
    updated = provider.update(volume.id, volume.outs, volume_inputs(region="hk", size=600))
    assert updated.outs is not None and updated.outs["size"] == 600


# ---- EIP bandwidth -----------------------------------------------------------------------


def test_in_place_bandwidth_limits_are_modify_eip_bandwidths() -> None:
    assert bandwidth_update_problem("Bandwidth", 1) is None
    assert bandwidth_update_problem("Bandwidth", 800) is None
    assert bandwidth_update_problem("Traffic", 200) is None
    over = bandwidth_update_problem("Bandwidth", 801)
    assert over and "got 801" in over and "1-800 Mbps" in over and "Bandwidth" in over
    traffic = bandwidth_update_problem("Traffic", 201)
    assert traffic and "1-200 Mbps" in traffic
    assert bandwidth_update_problem("Bandwidth", 0)
    odd = bandwidth_update_problem("ShareBandwidth", 5)
    assert odd and "Bandwidth, Traffic" in odd


def test_bandwidth_grows_in_place_up_to_800(ucloud_env: FakeUCloud, timings: Timings) -> None:
    provider = EipProvider(timings)
    eip = provider.create(eip_inputs())
    updated = provider.update(eip.id, eip.outs, eip_inputs(bandwidth=800))
    assert updated.outs is not None and updated.outs["bandwidth"] == 800


@pytest.mark.parametrize(("mode", "bad"), [("Bandwidth", 801), ("Traffic", 201)])
def test_bandwidth_beyond_the_in_place_limit_calls_nothing(
    ucloud_env: FakeUCloud, timings: Timings, mode: str, bad: int
) -> None:
    provider = EipProvider(timings)
    eip = provider.create(eip_inputs(charge_mode=mode))
    with pytest.raises(InvalidUpdateError, match=f"bandwidth: got {bad}"):
        provider.update(eip.id, eip.outs, eip_inputs(charge_mode=mode, bandwidth=bad, name="x"))
    assert ucloud_env.count("ModifyEIPBandwidth") == 0
    assert ucloud_env.count("UpdateEIPAttribute") == 0
    assert ucloud_env.resources("eip")[eip.id].fields["Bandwidth"] == 20


def test_allocation_allows_more_than_an_in_place_change(
    ucloud_env: FakeUCloud, timings: Timings
) -> None:
    """AllocateEIP takes 1-10000 Mbps (Bandwidth mode); ModifyEIPBandwidth only 1-800."""
    eip = EipProvider(timings).create(eip_inputs(bandwidth=1000))
    assert ucloud_env.resources("eip")[eip.id].fields["Bandwidth"] == 1000
    api = EipProvider(timings).api(eip.outs)
    with pytest.raises(Exception, match="ModifyEIPBandwidth - 4217"):
        api.call("unet", "modify_eip_bandwidth", {"EIPId": eip.id, "Bandwidth": 900})
    assert ucloud_env.count("ModifyEIPBandwidth") == 1  # a documented permanent code


def test_check_refuses_an_in_place_bandwidth_change_past_800_at_preview() -> None:
    provider = EipProvider()
    olds = provider.check({}, {**eip_inputs(), "bandwidth": 20}).inputs
    over = provider.check(olds, {**eip_inputs(), "bandwidth": 900})
    assert [f.property for f in over.failures] == ["bandwidth"]
    assert "ModifyEIPBandwidth" in over.failures[0].reason and "1-800" in over.failures[0].reason
    assert provider.check(olds, {**eip_inputs(), "bandwidth": 800}).failures == []
    assert provider.check({}, {**eip_inputs(), "bandwidth": 900}).failures == []  # a new EIP


def test_check_grows_ufs_by_the_extend_steps_and_creates_by_the_create_steps() -> None:
    provider = UfsVolumeProvider()
    olds = provider.check({}, volume_inputs(size=500)).inputs
    assert provider.check(olds, volume_inputs(size=1024)).failures == []
    grow = provider.check(olds, volume_inputs(size=600)).failures
    assert [f.property for f in grow] == ["size"] and "multiple of 1024" in grow[0].reason
    new = provider.check({}, volume_inputs(size=1024)).failures  # CreateUFSVolume: 100 GB steps
    assert [f.property for f in new] == ["size"]

"""UFS volume and mount point providers through their whole life against the fake API."""

from __future__ import annotations

from components.ucloud.base import Timings
from components.ucloud.ufs_mount_point import UfsMountPointProvider, plain_ip
from components.ucloud.ufs_volume import UfsVolumeProvider
from tests.fake_ucloud import FakeUCloud
from tests.ucloud.conftest import mount_inputs, volume_inputs


def test_volume_grows_and_renames_in_place(ucloud_env: FakeUCloud, timings: Timings) -> None:
    provider = UfsVolumeProvider(timings)
    volume = provider.create(volume_inputs(size=500.0))  # numbers arrive as floats
    record = ucloud_env.resources("ufs")[volume.id]
    assert record.fields["Size"] == 500 and record.fields["StorageType"] == "Basic"
    assert record.fields["ProtocolType"] == "NFSv4"

    # Basic in cn-bj2: ExtendUFSVolume takes multiples of 1024 GB (extend_ufs_volume.md).
    bigger = volume_inputs(size=1024, name="weights", remark="chatglm2")
    diff = provider.diff(volume.id, volume.outs, bigger)
    assert diff.changes and diff.replaces == []
    updated = provider.update(volume.id, volume.outs, bigger)
    assert updated.outs is not None
    assert (updated.outs["size"], updated.outs["name"]) == (1024, "weights")
    assert ucloud_env.count("ExtendUFSVolume") == 1
    assert ucloud_env.resources("ufs")[volume.id].fields["Remark"] == "chatglm2"

    faster = provider.diff(
        volume.id, updated.outs, volume_inputs(size=1024, storage_type="Advanced")
    )
    assert "storage_type" in faster.replaces and faster.delete_before_replace

    provider.delete(volume.id, updated.outs)
    provider.delete(volume.id, updated.outs)
    assert ucloud_env.resources("ufs") == {}
    assert provider.read(volume.id, updated.outs).id == ""


def test_mount_point_ip_is_plain_and_lifecycle_is_complete(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    volume = UfsVolumeProvider(timings).create(volume_inputs())
    provider = UfsMountPointProvider(timings)
    inputs = mount_inputs(volume.id, network)
    mount = provider.create(inputs)

    assert mount.id == f"{volume.id}/{network['vpc_id']}/{network['subnet_id']}"
    raw = ucloud_env.resources("ufs")[volume.id].fields["MountPoints"][0]["MountPointIp"]
    assert raw.endswith(":/")
    assert mount.outs["mount_point_ip"] == raw[:-2]
    assert provider.read(mount.id, mount.outs).outs["mount_point_ip"] == raw[:-2]

    renamed = provider.diff(mount.id, mount.outs, {**inputs, "name": "other"})
    assert renamed.replaces == ["name"]

    provider.delete(mount.id, mount.outs)
    provider.delete(mount.id, mount.outs)
    assert ucloud_env.resources("ufs")[volume.id].fields["MountPoints"] == []
    assert provider.read(mount.id, mount.outs).id == ""
    UfsVolumeProvider(timings).delete(volume.id, volume.outs)
    assert provider.read(mount.id, mount.outs).id == ""  # volume gone too


def test_plain_ip_strips_the_nfs_suffix() -> None:
    assert plain_ip("10.9.4.2:/") == "10.9.4.2"
    assert plain_ip("10.9.4.2") == "10.9.4.2"

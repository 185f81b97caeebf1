"""VPC and subnet providers through their whole life against the fake API."""

from __future__ import annotations

import pytest

from components.ucloud.base import Timings
from components.ucloud.subnet import SubnetProvider
from components.ucloud.vpc import VpcProvider
from tests.fake_ucloud import FakeUCloud
from tests.ucloud.conftest import subnet_inputs, vpc_inputs


def test_vpc_create_read_diff_delete_twice(ucloud_env: FakeUCloud, timings: Timings) -> None:
    provider = VpcProvider(timings)
    created = provider.create(vpc_inputs(cidr_blocks=["10.0.0.0/16", "192.168.0.0/24"]))

    assert created.id.startswith("uvnet-")
    assert set(ucloud_env.resources("vpc")) == {created.id}
    stored = ucloud_env.resources("vpc")[created.id].fields
    assert stored["Network"] == ["10.0.0.0/16", "192.168.0.0/24"]
    assert created.outs["create_time"] > 0

    read = provider.read(created.id, created.outs)
    assert read.id == created.id and read.outs["name"] == "llm-vpc"

    same = provider.diff(
        created.id, created.outs, vpc_inputs(cidr_blocks=["10.0.0.0/16", "192.168.0.0/24"])
    )
    assert same.changes is False
    renamed = provider.diff(
        created.id,
        created.outs,
        vpc_inputs(name="other", cidr_blocks=["10.0.0.0/16", "192.168.0.0/24"]),
    )
    assert renamed.changes and renamed.replaces == ["name"] and renamed.delete_before_replace

    provider.delete(created.id, created.outs)
    assert ucloud_env.resources("vpc") == {}
    provider.delete(created.id, created.outs)  # already gone: still fine
    assert provider.read(created.id, created.outs).id == ""


def test_subnet_renames_in_place_and_replaces_on_cidr(
    ucloud_env: FakeUCloud, timings: Timings
) -> None:
    vpc = VpcProvider(timings).create(vpc_inputs())
    provider = SubnetProvider(timings)
    subnet = provider.create(subnet_inputs(vpc.id))
    record = ucloud_env.resources("subnet")[subnet.id]
    assert (record.fields["Subnet"], record.fields["Netmask"]) == ("10.0.1.0", "24")

    renamed_inputs = subnet_inputs(vpc.id, name="renamed", tag="llm")
    rename = provider.diff(subnet.id, subnet.outs, renamed_inputs)
    assert rename.changes and rename.replaces == []
    updated = provider.update(subnet.id, subnet.outs, renamed_inputs)
    assert updated.outs is not None and updated.outs["name"] == "renamed"
    assert ucloud_env.resources("subnet")[subnet.id].fields["Tag"] == "llm"
    assert ucloud_env.count("UpdateSubnetAttribute") == 1

    moved = provider.diff(subnet.id, updated.outs, subnet_inputs(vpc.id, cidr_block="10.0.2.0/24"))
    assert "cidr_block" in moved.replaces

    provider.delete(subnet.id, updated.outs)
    provider.delete(subnet.id, updated.outs)
    assert ucloud_env.resources("subnet") == {}
    assert provider.read(subnet.id, updated.outs).id == ""


def test_vpc_delete_refused_while_subnets_exist_reports_ucloud_message(
    ucloud_env: FakeUCloud, timings: Timings
) -> None:
    vpc = VpcProvider(timings).create(vpc_inputs())
    SubnetProvider(timings).create(subnet_inputs(vpc.id))
    with pytest.raises(Exception, match="still has subnets"):
        VpcProvider(timings).delete(vpc.id, vpc.outs)
    assert vpc.id in ucloud_env.resources("vpc")

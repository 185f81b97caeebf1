"""EIP and NAT gateway providers through their whole life against the fake API."""

from __future__ import annotations

import pytest

from components.ucloud.base import Timings
from components.ucloud.eip import EipProvider
from components.ucloud.nat_gateway import NatGatewayProvider, NoDefaultFirewallError
from components.ucloud.subnet import SubnetProvider
from tests.fake_ucloud import FakeUCloud
from tests.ucloud.conftest import eip_inputs, nat_inputs, subnet_inputs


def test_eip_create_read_update_diff_delete_twice(ucloud_env: FakeUCloud, timings: Timings) -> None:
    provider = EipProvider(timings)
    created = provider.create(eip_inputs())

    assert created.id.startswith("eip-")
    record = ucloud_env.resources("eip")[created.id]
    assert record.fields["Bandwidth"] == 20 and record.fields["PayMode"] == "Bandwidth"
    assert record.fields["ChargeType"] == "Dynamic"
    assert created.outs["public_ip"] == record.fields["EIPAddr"][0]["IP"]
    sent = [params for action, params in ucloud_env.calls if action == "AllocateEIP"]
    assert sent[0]["OperatorName"] == "Bgp"

    read = provider.read(created.id, created.outs)
    assert read.id == created.id and read.outs["public_ip"] == created.outs["public_ip"]
    assert provider.diff(created.id, created.outs, eip_inputs()).changes is False

    wider = eip_inputs(bandwidth=50, name="renamed")
    in_place = provider.diff(created.id, created.outs, wider)
    assert in_place.changes and in_place.replaces == []
    updated = provider.update(created.id, created.outs, wider)
    assert updated.outs is not None and updated.outs["bandwidth"] == 50
    assert record.fields["Name"] == "renamed" and record.fields["Bandwidth"] == 50
    assert ucloud_env.count("ModifyEIPBandwidth") == 1
    assert ucloud_env.count("UpdateEIPAttribute") == 1

    other_line = provider.diff(created.id, updated.outs, eip_inputs(internet_type="International"))
    assert other_line.replaces == ["internet_type"] and other_line.delete_before_replace

    provider.delete(created.id, updated.outs)
    assert ucloud_env.resources("eip") == {}
    provider.delete(created.id, updated.outs)  # already gone: still fine
    assert provider.read(created.id, updated.outs).id == ""


def test_nat_gateway_lifecycle_uses_default_firewall_and_holds_eip_and_subnet(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    eip = EipProvider(timings).create(eip_inputs())
    provider = NatGatewayProvider(timings)
    inputs = nat_inputs(network, eip.id)
    created = provider.create(inputs)

    assert created.id.startswith("natgw-")
    record = ucloud_env.resources("natgw")[created.id]
    assert record.fields["SubnetIds"] == [network["subnet_id"]]
    assert record.fields["EIPIds"] == [eip.id] and record.fields["IfOpen"] == 0
    firewall = ucloud_env.resources("firewall")[record.fields["FirewallId"]]
    assert firewall.fields["Type"] == "recommend non web"
    assert created.outs["effective_firewall_id"] == firewall.id
    assert created.outs["firewall_id"] == ""  # the input stays as given: no diff next time
    assert provider.diff(created.id, created.outs, inputs).changes is False
    # While bound, UCloud refuses to release the EIP or delete the subnet.
    with pytest.raises(Exception, match="unbind it first"):
        EipProvider(timings).delete(eip.id, eip.outs)
    assert EipProvider(timings).read(eip.id, eip.outs).id == eip.id

    second = SubnetProvider(timings).create(
        subnet_inputs(network["vpc_id"], cidr_block="10.0.2.0/24", name="b")
    )
    grown = nat_inputs(
        network,
        eip.id,
        subnet_ids=[second.id, network["subnet_id"]],
        name="nat2",
        enable_white_list=True,
    )
    change = provider.diff(created.id, created.outs, grown)
    assert change.changes and change.replaces == []
    updated = provider.update(created.id, created.outs, grown)
    assert updated.outs is not None
    assert sorted(record.fields["SubnetIds"]) == sorted([second.id, network["subnet_id"]])
    assert record.fields["NATGWName"] == "nat2" and record.fields["IfOpen"] == 1
    assert provider.diff(created.id, updated.outs, grown).changes is False
    assert provider.diff(
        created.id, updated.outs, {**grown, "eip_ids": ["eip-other"]}
    ).replaces == ["eip_ids"]

    provider.delete(created.id, updated.outs)
    assert ucloud_env.resources("natgw") == {}
    assert ucloud_env.count("DeleteNATGW") == 1
    provider.delete(created.id, updated.outs)
    assert ucloud_env.count("DeleteNATGW") == 1
    assert provider.read(created.id, updated.outs).id == ""
    EipProvider(timings).delete(eip.id, eip.outs)  # unbound now, and the gateway was waited for
    assert ucloud_env.resources("eip") == {}


def test_given_firewall_is_used_and_a_missing_default_is_explained(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    eip = EipProvider(timings).create(eip_inputs())
    web = "firewall-cn-bj2-web"
    created = NatGatewayProvider(timings).create(nat_inputs(network, eip.id, firewall_id=web))
    assert ucloud_env.resources("natgw")[created.id].fields["FirewallId"] == web
    assert ucloud_env.count("DescribeFirewall") == 0  # a given firewall is not looked up
    NatGatewayProvider(timings).delete(created.id, created.outs)

    for firewall in list(ucloud_env.resources("firewall").values()):
        firewall.fields["Type"] = "user defined"
    with pytest.raises(NoDefaultFirewallError, match=r"firewall_id: got ''.*recommend non web"):
        NatGatewayProvider(timings).create(nat_inputs(network, eip.id))
    assert ucloud_env.resources("natgw") == {}

"""The resource classes: type tokens, typed outputs, secrets marked, credentials never inputs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from pulumi.dynamic import Resource
from pulumi.runtime.stack import wait_for_rpcs

from components.ucloud import (
    Eip,
    EipArgs,
    NatGateway,
    NatGatewayArgs,
    Subnet,
    SubnetArgs,
    UfsMountPoint,
    UfsMountPointArgs,
    UfsVolume,
    UfsVolumeArgs,
    Uk8sCluster,
    Uk8sClusterArgs,
    Uk8sNode,
    Uk8sNodeArgs,
    Vpc,
    VpcArgs,
)


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.made: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.made.append(args)
        return f"{args.name}-id", {**args.inputs, "mount_point_ip": "10.9.0.3"}

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        return {}


@pytest.fixture
def mocks() -> Iterator[Recorder]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    recorder = Recorder()
    pulumi.runtime.set_mocks(recorder, preview=False)
    yield recorder
    # Drain what the test left running: Pulumi tracks every Output globally, and a later
    # program run under mocks waits for all of them.
    loop.run_until_complete(wait_for_rpcs())
    asyncio.set_event_loop(None)
    loop.close()


def build_all() -> dict[str, Any]:
    vpc = Vpc("vpc", VpcArgs(region="cn-bj2", name="v", cidr_blocks=["10.0.0.0/16"]))
    subnet = Subnet("subnet", SubnetArgs("cn-bj2", vpc.id, "10.0.1.0/24", "s"))
    eip = Eip("eip", EipArgs(region="cn-bj2", name="nat-ip", bandwidth=20))
    nat = NatGateway("nat", NatGatewayArgs("cn-bj2", "nat", vpc.id, [subnet.id], [eip.id]))
    volume = UfsVolume("ufs", UfsVolumeArgs(region="cn-bj2", name="m", size=500))
    mount = UfsMountPoint("mount", UfsMountPointArgs("cn-bj2", volume.id, "k8s", vpc.id, subnet.id))
    cluster = Uk8sCluster(
        "cluster",
        Uk8sClusterArgs(
            "cn-bj2", "c", vpc.id, subnet.id, "Secret-Pass1", "1.30.3", ["a", "b", "c"]
        ),
    )
    node = Uk8sNode(
        "node", Uk8sNodeArgs("cn-bj2", cluster.id, "gpu", subnet.id, "a", "Secret-Pass1", gpu=1)
    )
    return {
        "vpc": vpc,
        "subnet": subnet,
        "eip": eip,
        "nat": nat,
        "ufs": volume,
        "mount": mount,
        "cluster": cluster,
        "node": node,
    }


def test_type_tokens_and_inputs_under_mocks(mocks: Recorder) -> None:
    built = build_all()

    async def settle() -> tuple[str, bool]:
        # Every registration, not only the ones read below: the type-token check needs all.
        await asyncio.gather(*(resource.id.future() for resource in built.values()))
        ip = await built["mount"].mount_point_ip.future()
        secret = await built["cluster"].password.is_secret()
        return ip, secret

    ip, password_secret = asyncio.get_event_loop().run_until_complete(settle())
    assert ip == "10.9.0.3" and password_secret
    tokens = {args.name: args.typ for args in mocks.made}
    assert tokens == {
        "vpc": "pulumi-python:dynamic/ucloud:Vpc",
        "subnet": "pulumi-python:dynamic/ucloud:Subnet",
        "eip": "pulumi-python:dynamic/ucloud:Eip",
        "nat": "pulumi-python:dynamic/ucloud:NatGateway",
        "ufs": "pulumi-python:dynamic/ucloud:UfsVolume",
        "mount": "pulumi-python:dynamic/ucloud:UfsMountPoint",
        "cluster": "pulumi-python:dynamic/ucloud:Uk8sCluster",
        "node": "pulumi-python:dynamic/ucloud:Uk8sNode",
    }
    for args in mocks.made:
        assert "__provider" in args.inputs
        assert not {k for k in args.inputs if "key" in k.lower()}, args.inputs
    subnet_inputs = next(a for a in mocks.made if a.name == "subnet").inputs
    assert subnet_inputs["vpc_id"] == "vpc-id"  # a real edge, not only depends_on
    nat_inputs = next(a for a in mocks.made if a.name == "nat").inputs
    assert nat_inputs["eip_ids"] == ["eip-id"] and nat_inputs["subnet_ids"] == ["subnet-id"]


def test_secret_outputs_are_requested_and_user_options_kept(
    mocks: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, tuple[dict, pulumi.ResourceOptions]] = {}

    def capture(self: Resource, provider: Any, name: str, props: dict, opts: Any = None) -> None:
        seen[name] = (props, opts)

    monkeypatch.setattr(Resource, "__init__", capture)
    Uk8sCluster(
        "cluster",
        Uk8sClusterArgs("cn-bj2", "c", "v", "s", "Secret-Pass1", "1.30.3", ["a", "b", "c"]),
        opts=pulumi.ResourceOptions(protect=True),
    )
    Uk8sNode("node", Uk8sNodeArgs("cn-bj2", "c", "gpu", "s", "a", "Secret-Pass1"))
    props, opts = seen["cluster"]
    assert set(opts.additional_secret_outputs or []) >= {
        "password",
        "kubeconfig",
        "internal_kubeconfig",
    }
    assert opts.protect is True
    assert {"kubeconfig", "internal_kubeconfig", "status", "api_server"} <= set(props)
    assert isinstance(props["password"], pulumi.Output)
    assert "password" in (seen["node"][1].additional_secret_outputs or [])

"""The NAT gateway that gives the cluster's nodes their way out: where it sits, what it uses,
and that nothing which needs the internet is created before it."""

from __future__ import annotations

import pulumi
import pytest

from components.ucloud.cluster import GpuCluster, GpuClusterArgs, GpuNodePoolArgs
from tests.stack.stack_values import UCLOUD, fed_by, planned
from tools.mock_outputs import factories
from tools.mock_runtime import Plan, run_program

OFFLINE_PUBLIC_IP = "203.0.113.20"  # tools/mock_outputs.py's stand-in for the EIP's address


@pytest.fixture(scope="module", params=["dev", "prod"])
def cloud_plan(request: pytest.FixtureRequest) -> Plan:
    return planned(request.param)


def test_nat_gateway_sits_in_the_clusters_vpc_and_subnet(cloud_plan: Plan) -> None:
    vpc, subnet = cloud_plan.one(UCLOUD + "Vpc"), cloud_plan.one(UCLOUD + "Subnet")
    nat = cloud_plan.one(UCLOUD + "NatGateway")
    cluster = cloud_plan.one(UCLOUD + "Uk8sCluster")
    assert fed_by(nat, "vpc_id", vpc) and nat.raw_inputs["vpc_id"] == vpc.id
    assert fed_by(nat, "subnet_ids", subnet) and nat.raw_inputs["subnet_ids"] == [subnet.id]
    assert cluster.raw_inputs["subnet_id"] == subnet.id  # the subnet it serves is the nodes' one
    assert nat.raw_inputs["enable_white_list"] is False  # on, with no white list, lets none out


def test_nat_gateway_uses_the_eip(cloud_plan: Plan) -> None:
    nat, eip = cloud_plan.one(UCLOUD + "NatGateway"), cloud_plan.one(UCLOUD + "Eip")
    assert fed_by(nat, "eip_ids", eip) and nat.raw_inputs["eip_ids"] == [eip.id]
    assert eip.outputs["public_ip"] == OFFLINE_PUBLIC_IP
    assert eip.raw_inputs["bandwidth"] == 20 and eip.raw_inputs["internet_type"] == "BGP"
    assert (
        eip.raw_inputs["charge_type"]
        == cloud_plan.one(UCLOUD + "Uk8sCluster").raw_inputs["charge_type"]
    )


def test_cluster_and_nodes_wait_for_the_nat_gateway(cloud_plan: Plan) -> None:
    nat = cloud_plan.one(UCLOUD + "NatGateway")
    cluster = cloud_plan.one(UCLOUD + "Uk8sCluster")
    nodes = cloud_plan.by_type(UCLOUD + "Uk8sNode")
    assert nat.urn in cluster.dependencies
    assert nodes and all(nat.urn in n.dependencies for n in nodes)
    # ...and the gateway is a sibling of them under the cluster component.
    component = cloud_plan.one("llm-uk8s:cluster:GpuCluster")
    assert nat.parent == component.urn == cloud_plan.one(UCLOUD + "Eip").parent


def test_the_local_stack_has_no_nat_gateway(local: Plan) -> None:
    assert local.by_type(UCLOUD + "NatGateway") == []
    assert local.by_type(UCLOUD + "Eip") == []


def test_gpu_cluster_exports_the_nat_address_and_passes_its_settings() -> None:
    def program() -> None:
        cluster = GpuCluster(
            "gpu",
            GpuClusterArgs(
                region="hk",
                project_id="org-1",
                zones=["hk-02"],
                vpc_cidr="10.60.0.0/16",
                subnet_cidr="10.60.0.0/20",
                service_cidr="172.17.0.0/16",
                cluster_name="c",
                k8s_version="1.30.3",
                master_machine_type="N",
                master_cpu=4,
                master_mem=8192,
                external_api_server=True,
                charge_type="Month",
                gpu_nodes=GpuNodePoolArgs("G", "T4", 1, 8, 32768, 1),
                nat_bandwidth=50,
                nat_internet_type="International",
            ),
        )
        pulumi.export("nat_public_ip", cluster.nat_public_ip)
        pulumi.export("nat_gateway_id", cluster.nat_gateway_id)

    plan = run_program(program, outputs=factories({}))
    eip, nat = plan.one(UCLOUD + "Eip"), plan.one(UCLOUD + "NatGateway")
    assert plan.outputs["nat_public_ip"] == OFFLINE_PUBLIC_IP
    assert plan.outputs["nat_gateway_id"] == nat.id
    assert eip.raw_inputs["bandwidth"] == 50
    assert eip.raw_inputs["internet_type"] == "International"
    assert eip.raw_inputs["charge_type"] == "Month" and eip.raw_inputs["region"] == "hk"

"""The real program under mocks, one stack at a time: the graph, secrets, protection."""

from __future__ import annotations

import json

import pytest

from tests.stack.stack_values import UCLOUD, fed_by
from tools.mock_runtime import Plan
from tools.plan import plan_stack


def test_mount_point_lives_in_the_clusters_vpc_and_subnet(dev: Plan) -> None:
    vpc, subnet = dev.one(UCLOUD + "Vpc"), dev.one(UCLOUD + "Subnet")
    mount = dev.one(UCLOUD + "UfsMountPoint")
    cluster = dev.one(UCLOUD + "Uk8sCluster")
    assert fed_by(mount, "vpc_id", vpc) and mount.raw_inputs["vpc_id"] == vpc.id
    assert fed_by(mount, "subnet_id", subnet) and mount.raw_inputs["subnet_id"] == subnet.id
    assert fed_by(mount, "volume_id", dev.one(UCLOUD + "UfsVolume"))
    assert fed_by(subnet, "vpc_id", vpc)
    assert fed_by(cluster, "vpc_id", vpc) and fed_by(cluster, "subnet_id", subnet)


def test_nodes_join_the_cluster_and_the_provider_waits_for_them(dev: Plan) -> None:
    cluster = dev.one(UCLOUD + "Uk8sCluster")
    nodes = dev.by_type(UCLOUD + "Uk8sNode")
    provider = dev.one("pulumi:providers:kubernetes")
    assert nodes and all(fed_by(n, "cluster_id", cluster) for n in nodes)
    assert fed_by(provider, "kubeconfig", cluster)
    assert all(provider.depends_on(n) for n in nodes)


def test_gpu_settings_follow_the_stack_config(dev: Plan, prod: Plan) -> None:
    (node,) = dev.by_type(UCLOUD + "Uk8sNode")
    assert node.raw_inputs["gpu_type"] == "T4" and node.raw_inputs["count"] == 1
    assert node.raw_inputs["machine_type"] == "G"
    assert node.raw_inputs["taints"] == ["nvidia.com/gpu=present:NoSchedule"]
    groups = prod.by_type(UCLOUD + "Uk8sNode")
    assert sorted(g.raw_inputs["zone"] for g in groups) == ["cn-bj2-02", "cn-bj2-03"]
    assert sum(g.raw_inputs["count"] for g in groups) == 2
    assert {g.raw_inputs["gpu_type"] for g in groups} == {"A800"}
    cluster = prod.one(UCLOUD + "Uk8sCluster")
    # cn-bj2 has no -04 (API summary/regionlist.md): prod's third master is in -05.
    assert cluster.raw_inputs["master_zones"] == ["cn-bj2-02", "cn-bj2-03", "cn-bj2-05"]
    assert prod.one(UCLOUD + "UfsVolume").raw_inputs["size"] == 1000


def test_every_resource_sits_under_a_component(dev: Plan) -> None:
    components = {r.urn for r in dev.resources if not r.custom}
    for r in dev.resources:
        if r.type.startswith(UCLOUD):
            assert r.parent in components, r.urn
    storage = dev.one("llm-uk8s:storage:ModelStorage")
    assert {r.type for r in dev.children(storage)} == {
        UCLOUD + "UfsVolume",
        UCLOUD + "UfsMountPoint",
    }


def test_secrets_stay_secret(dev: Plan) -> None:
    cluster = dev.one(UCLOUD + "Uk8sCluster")
    assert "password" in cluster.secret_inputs
    assert all("password" in n.secret_inputs for n in dev.by_type(UCLOUD + "Uk8sNode"))
    assert "kubeconfig" in dev.secret_outputs
    assert "kubeconfig" in dev.one("pulumi:providers:kubernetes").secret_inputs
    (password_resource,) = [
        r
        for r in dev.by_type("random:index/randomPassword:RandomPassword")
        if r.name == "gpu-host-password"
    ]
    password = password_resource.outputs
    assert password["result"] == "[secret]"
    masked = json.dumps([r.inputs for r in dev.resources]) + json.dumps(
        {k: v for k, v in dev.outputs.items() if k not in dev.secret_outputs}
    )
    assert "offline-gpu-host-password" not in masked
    assert "offline-plan-token" not in masked


def test_model_data_is_protected_unless_config_says_otherwise(dev: Plan) -> None:
    assert dev.one(UCLOUD + "UfsVolume").protect
    assert not dev.one(UCLOUD + "UfsMountPoint").protect
    unprotected = plan_stack("dev", overrides={"retainModelData": False})
    assert not unprotected.one(UCLOUD + "UfsVolume").protect


def test_local_stack_has_no_ucloud(local: Plan) -> None:
    assert not [r for r in local.resources if r.type.startswith(UCLOUD)]
    provider = local.one("pulumi:providers:kubernetes")
    assert "kubeconfig" not in provider.raw_inputs


def test_plan_is_deterministic() -> None:
    # Two fresh runs, not the cached plan: the point is that running again gives the same.
    first, second = plan_stack("prod"), plan_stack("prod")

    def snapshot(plan: Plan) -> list:
        return sorted(
            (r.urn, json.dumps(r.inputs, sort_keys=True), json.dumps(r.outputs, sort_keys=True))
            for r in plan.resources
        )

    assert snapshot(first) == snapshot(second)


def test_bad_config_stops_the_program_before_any_resource() -> None:
    with pytest.raises(Exception, match=r"ufsSizeGb = 550"):
        plan_stack("dev", overrides={"ufsSizeGb": 550})


def test_nat_settings_reach_the_eip_and_its_ip_is_exported() -> None:
    plan = plan_stack("dev", overrides={"natBandwidthMbps": 50, "natInternetType": "International"})
    eip = plan.one(UCLOUD + "Eip")
    assert eip.raw_inputs["bandwidth"] == 50
    assert eip.raw_inputs["internet_type"] == "International"
    assert plan.outputs["natPublicIp"] == eip.outputs["public_ip"]


def test_a_run_does_not_inherit_the_previous_runs_exports() -> None:
    # Pulumi's set_mocks keeps an existing root stack; without a reset, stack outputs of one run
    # leaked into the next run in the same process (e.g. kubeconfig into a later plan).
    import pulumi

    from tools.mock_runtime import run_program

    first = run_program(lambda: pulumi.export("first", 1))
    second = run_program(lambda: pulumi.export("second", 2))
    assert (first.outputs, second.outputs) == ({"first": 1}, {"second": 2})

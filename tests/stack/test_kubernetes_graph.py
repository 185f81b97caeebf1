"""The whole program's Kubernetes layer per stack: schema, one graph, providers, secrets, policy."""

from __future__ import annotations

import json

import pytest

from components.config import parse
from tests.k8s.validate import schema_errors
from tests.policy.harness import all_violations
from tests.stack.stack_values import STACKS, raw_values
from tools.mock_runtime import Plan, RecordedResource
from tools.plan import plan_stack

UCLOUD = "pulumi-python:dynamic/ucloud:"
GPU_DAEMONSETS = "kubernetes:apps/v1:DaemonSet"


@pytest.fixture(scope="module", params=STACKS)
def stack_plan(request: pytest.FixtureRequest) -> tuple[str, Plan]:
    return request.param, plan_stack(request.param)


@pytest.fixture(scope="module")
def dev() -> Plan:
    return plan_stack("dev")


def fed_by(consumer: RecordedResource, field: str, producer: RecordedResource) -> bool:
    return producer.urn in consumer.property_dependencies.get(field, [])


def test_every_object_is_valid_for_the_stacks_kubernetes_version(stack_plan) -> None:
    stack, plan = stack_plan
    version = parse(raw_values(stack), stack).kubernetes_version
    manifests = plan.manifests()
    assert manifests
    errors = [e for m in manifests for e in schema_errors(m, version)]
    assert errors == []


def test_policy_pack_passes_every_stack(stack_plan) -> None:
    _, plan = stack_plan
    assert all_violations(plan.manifests()) == []


def test_pv_server_is_the_mount_points_ip(dev: Plan) -> None:
    pv = dev.one("kubernetes:core/v1:PersistentVolume")
    mount = dev.one(UCLOUD + "UfsMountPoint")
    assert fed_by(pv, "spec", mount)
    assert pv.raw_inputs["spec"]["nfs"] == {"server": mount.outputs["mount_point_ip"], "path": "/"}
    assert pv.raw_inputs["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    claim = dev.one("kubernetes:core/v1:PersistentVolumeClaim")
    assert claim.raw_inputs["spec"]["volumeName"] == pv.outputs["metadata"]["name"]
    assert claim.raw_inputs["spec"]["storageClassName"] == ""


def test_deployment_waits_for_the_fetch_job_and_the_gpu_daemonsets(dev: Plan) -> None:
    deployment = dev.one("kubernetes:apps/v1:Deployment")
    job = dev.one("kubernetes:batch/v1:Job")
    assert deployment.depends_on(job)
    daemonsets = dev.by_type(GPU_DAEMONSETS)
    assert daemonsets and all(deployment.depends_on(ds) for ds in daemonsets)
    claim = dev.one("kubernetes:core/v1:PersistentVolumeClaim")
    assert fed_by(deployment, "spec", claim)


def test_everything_on_the_cluster_uses_the_clusters_provider(dev: Plan) -> None:
    provider = dev.one("pulumi:providers:kubernetes")
    cluster = dev.one(UCLOUD + "Uk8sCluster")
    assert fed_by(provider, "kubeconfig", cluster)
    k8s_objects = [r for r in dev.resources if r.type.startswith("kubernetes:")]
    assert k8s_objects
    for r in k8s_objects:
        assert dev.provider_of(r) == provider, r.urn


def test_gpu_settings_follow_config(dev: Plan) -> None:
    config = parse(raw_values("dev"), "dev")
    pod = dev.one("kubernetes:apps/v1:Deployment").raw_inputs["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == str(config.gpus_per_replica)
    assert pod["nodeSelector"] == config.node_labels
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    for ds in dev.by_type(GPU_DAEMONSETS):
        ds_pod = ds.raw_inputs["spec"]["template"]["spec"]
        assert ds_pod["nodeSelector"] == config.node_labels
        assert ds_pod["priorityClassName"] == "system-node-critical"


def test_local_stack_has_no_ucloud_and_no_gpu_objects() -> None:
    plan = plan_stack("local")
    assert not [r for r in plan.resources if r.type.startswith(UCLOUD)]
    assert not plan.by_type(GPU_DAEMONSETS)
    assert not plan.by_type("kubernetes:batch/v1:Job")
    text = json.dumps(plan.manifests())
    assert "nvidia.com/gpu" not in text
    pv = plan.one("kubernetes:core/v1:PersistentVolume")
    assert "hostPath" in pv.raw_inputs["spec"] and "nfs" not in pv.raw_inputs["spec"]


def test_api_key_is_generated_and_stays_secret(stack_plan) -> None:
    _, plan = stack_plan
    assert "apiKey" in plan.secret_outputs
    assert "kubeconfig" not in plan.outputs or "kubeconfig" in plan.secret_outputs
    secret = next(r for r in plan.by_type("kubernetes:core/v1:Secret") if "api-key" in r.name)
    assert set(secret.secret_inputs) & {"stringData", "data"}
    text = json.dumps(plan.manifests())
    key = plan.outputs["apiKey"]
    assert key and key not in text


def test_endpoint_follows_service_type(stack_plan) -> None:
    stack, plan = stack_plan
    config = parse(raw_values(stack), stack)
    service = next(r for r in plan.by_type("kubernetes:core/v1:Service") if r.name == "inference")
    assert service.raw_inputs["spec"]["type"] == config.service_type
    if config.service_type == "NodePort":
        ports = service.raw_inputs["spec"]["ports"]
        assert ports[0]["nodePort"] == config.node_port
    assert plan.outputs["endpoint"]

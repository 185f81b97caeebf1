"""The whole program's Kubernetes layer per stack: schema, one graph, providers, secrets, policy."""

from __future__ import annotations

import json

from components.stack.config import parse
from tests.k8s.stacks import create_timeout_s, service_named
from tests.k8s.validate import assert_valid_plan
from tests.policy.harness import all_violations
from tests.stack.stack_values import UCLOUD, fed_by, raw_values
from tools.mock_runtime import Plan
from tools.plan import plan_stack

GPU_DAEMONSETS = "kubernetes:apps/v1:DaemonSet"


def test_every_object_is_valid_for_the_stacks_kubernetes_version(stack_plan) -> None:
    stack, plan = stack_plan
    version = parse(raw_values(stack), stack).kubernetes_version
    assert_valid_plan(plan, version)


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


def test_deployment_waits_for_the_fetch_job_and_schedulable_gpus(dev: Plan) -> None:
    """The device plugin, not the DCGM exporter: metrics failing must not block serving (this
    test asserted a wait on every GPU DaemonSet before)."""
    deployment = dev.one("kubernetes:apps/v1:Deployment")
    job = dev.one("kubernetes:batch/v1:Job")
    assert deployment.depends_on(job)
    daemonsets = {ds.name: ds for ds in dev.by_type(GPU_DAEMONSETS)}
    assert deployment.depends_on(daemonsets["gpu-drivers-device-plugin"])
    assert not deployment.depends_on(daemonsets["gpu-drivers-dcgm-exporter"])
    claim = dev.one("kubernetes:core/v1:PersistentVolumeClaim")
    assert fed_by(deployment, "spec", claim)


def test_each_wait_starts_after_what_it_waits_for(stack_plan) -> None:
    """A wait that runs alongside a longer upstream wait times out on the first `pulumi up`: the
    Service (it waits for an endpoint) must start after the Deployment, the Deployment after the
    Job, and each wait must cover its own deadline."""
    _, plan = stack_plan
    deployment = plan.one("kubernetes:apps/v1:Deployment")
    service = service_named(plan, "inference")
    assert service.depends_on(deployment)
    assert plan.one("kubernetes:policy/v1:PodDisruptionBudget").depends_on(deployment)
    spec = deployment.raw_inputs["spec"]
    assert create_timeout_s(deployment) >= spec["progressDeadlineSeconds"]
    for job in plan.by_type("kubernetes:batch/v1:Job"):
        assert deployment.depends_on(job)
        deadline = job.raw_inputs["spec"]["activeDeadlineSeconds"]
        assert create_timeout_s(job) > deadline


def test_fetch_job_deadline_and_replacement_follow_config() -> None:
    plan = plan_stack("dev", overrides={"modelFetchTimeoutSeconds": 10800})
    job = plan.one("kubernetes:batch/v1:Job")
    assert job.raw_inputs["spec"]["activeDeadlineSeconds"] == 10800
    assert create_timeout_s(job) > 10800
    assert job.raw_inputs["metadata"]["annotations"]["pulumi.com/replaceUnready"] == "true"


def test_growing_the_ufs_keeps_the_volume_and_claim_unchanged(dev: Plan) -> None:
    """A claim's size change forces its replacement (deleted while pods hold it): the nominal
    size of the PV and claim must not follow ufsSizeGb."""
    grown = plan_stack("dev", overrides={"ufsSizeGb": 2000})
    assert grown.one(UCLOUD + "UfsVolume").raw_inputs["size"] == 2000
    for kind in ("PersistentVolume", "PersistentVolumeClaim"):
        before = dev.one(f"kubernetes:core/v1:{kind}").raw_inputs["spec"]
        after = grown.one(f"kubernetes:core/v1:{kind}").raw_inputs["spec"]
        assert json.dumps(before, sort_keys=True) == json.dumps(after, sort_keys=True), kind


def test_daemonset_mode_gives_the_inference_pod_the_nvidia_runtime_class() -> None:
    plan = plan_stack("dev", overrides={"gpuDriverMode": "daemonset"})
    runtime_class = plan.one("kubernetes:node.k8s.io/v1:RuntimeClass")
    pod = plan.one("kubernetes:apps/v1:Deployment").raw_inputs["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == runtime_class.raw_inputs["metadata"]["name"] == "nvidia"
    assert plan.one("kubernetes:apps/v1:Deployment").depends_on(runtime_class)


def test_preinstalled_mode_keeps_the_default_runtime(dev: Plan) -> None:
    pod = dev.one("kubernetes:apps/v1:Deployment").raw_inputs["spec"]["template"]["spec"]
    assert "runtimeClassName" not in pod


def test_every_configured_gpu_taint_is_tolerated() -> None:
    taints = ["nvidia.com/gpu=present:NoSchedule", "example.com/dedicated=llm:NoSchedule"]
    plan = plan_stack("dev", overrides={"gpuNodeTaints": taints})
    pods = [
        r.raw_inputs["spec"]["template"]["spec"]
        for r in [plan.one("kubernetes:apps/v1:Deployment"), *plan.by_type(GPU_DAEMONSETS)]
    ]
    for pod in pods:
        keys = {t["key"] for t in pod["tolerations"]}
        assert {"nvidia.com/gpu", "example.com/dedicated"} <= keys


def test_the_revision_reaches_the_servers_through_the_model_store() -> None:
    """One value, one path: the Deployment's revision and weights' directory come from the
    ModelFetch, so they cannot disagree with what the Job fetched."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    plan = plan_stack("dev", overrides={"modelRevision": revision})
    command = plan.one("kubernetes:batch/v1:Job").raw_inputs["spec"]["template"]["spec"][
        "containers"
    ][0]["command"]
    assert command[command.index("--dest") + 1] == f"/models/chatglm2-6b/{revision}"
    assert "--allow-unpinned" not in command  # a commit needs no escape hatch
    template = plan.one("kubernetes:apps/v1:Deployment").raw_inputs["spec"]["template"]
    assert template["metadata"]["annotations"]["llm-uk8s/model-revision"] == revision
    env = {e["name"]: e["value"] for e in template["spec"]["containers"][0]["env"]}
    assert env["LLMSERVE_MODEL"] == f"/app/models/chatglm2-6b/{revision}"
    assert plan.outputs["modelPath"] == env["LLMSERVE_MODEL"]


def test_load_balancer_type_follows_config(prod: Plan) -> None:
    service = service_named(prod, "inference")
    annotation = "service.beta.kubernetes.io/ucloud-load-balancer-type"
    assert service.raw_inputs["metadata"]["annotations"][annotation] == "inner"
    outer = plan_stack(
        "prod", overrides={"loadBalancerType": "outer", "allowedCidrs": ["203.0.113.0/24"]}
    )
    service = service_named(outer, "inference")
    assert service.raw_inputs["metadata"]["annotations"][annotation] == "outer"


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


def test_local_stack_has_no_ucloud_and_no_gpu_objects(local: Plan) -> None:
    assert not [r for r in local.resources if r.type.startswith(UCLOUD)]
    assert not local.by_type(GPU_DAEMONSETS)
    assert not local.by_type("kubernetes:batch/v1:Job")
    text = json.dumps(local.manifests())
    assert "nvidia.com/gpu" not in text
    pv = local.one("kubernetes:core/v1:PersistentVolume")
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
    service = service_named(plan, "inference")
    assert service.raw_inputs["spec"]["type"] == config.service_type
    if config.service_type == "NodePort":
        ports = service.raw_inputs["spec"]["ports"]
        assert ports[0]["nodePort"] == config.node_port
    assert plan.outputs["endpoint"]

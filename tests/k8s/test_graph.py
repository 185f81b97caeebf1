"""The components' graph under mocks: values flow where they should, options reach every child."""

from __future__ import annotations

from dataclasses import fields, replace

import pulumi
import pytest

from components.k8s import conventions
from components.k8s.gpu_drivers import GpuDriversArgs
from components.k8s.inference import API_KEY_DIR, PORT
from components.k8s.model_fetch import NOMINAL_CAPACITY, ModelFetchArgs
from tests.k8s.stacks import (
    GPU_SELECTOR,
    HUB_TOKEN,
    MOCK_API_KEY,
    REVISION,
    UFS_IP,
    StackArgs,
    create_timeout_s,
    dev_args,
    gpu_inference,
    local_args,
    prod_args,
    run_default,
    run_stack,
    service_named,
    ufs_store,
)
from tools.mock_runtime import Plan, RecordedResource

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
DAEMONSET = "kubernetes:apps/v1:DaemonSet"
JOB = "kubernetes:batch/v1:Job"
PV = "kubernetes:core/v1:PersistentVolume"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
SECRET = "kubernetes:core/v1:Secret"


def pod_spec(resource: RecordedResource) -> dict:
    return resource.manifest()["spec"]["template"]["spec"]


def server_container(plan: Plan) -> dict:
    return pod_spec(plan.one(DEPLOYMENT))["containers"][0]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# --- model store ------------------------------------------------------------------------------


def test_pv_server_is_the_mount_point_ip_without_export_suffix() -> None:
    plan = run_default("dev")
    pv = plan.one(PV).manifest()
    assert pv["spec"]["nfs"] == {"server": UFS_IP, "path": "/"}
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pv["spec"]["mountOptions"] == ["nolock", "nfsvers=4.0"]


def test_pv_server_flows_from_an_output_not_a_copy() -> None:
    """The mount point's IP is only known after UFS exists: an Output must reach the PV."""

    def make() -> StackArgs:
        stack = dev_args()
        stack.store = ufs_store(
            nfs_server=pulumi.Output.from_input("10.1.2.3:/").apply(lambda s: s)
        )
        return stack

    pv = run_stack("dev", make).one(PV).manifest()
    assert pv["spec"]["nfs"]["server"] == "10.1.2.3"


def test_claim_binds_exactly_that_volume() -> None:
    plan = run_default("dev")
    pv, pvc = plan.one(PV), plan.one(PVC)
    claim = pvc.manifest()
    assert claim["spec"]["storageClassName"] == ""
    assert claim["spec"]["volumeName"] == pv.manifest()["metadata"]["name"]
    assert pvc.depends_on(pv)
    assert pv.manifest()["spec"]["claimRef"] == {
        "namespace": claim["metadata"]["namespace"],
        "name": claim["metadata"]["name"],
    }


def test_fetch_job_runs_the_image_fetch_command_pinned_and_resumable() -> None:
    plan = run_default("prod")
    job = plan.one(JOB)
    spec = pod_spec(job)
    fetch = spec["containers"][0]
    assert fetch["command"][:2] == ["llmserve", "fetch"]
    cmd = fetch["command"]
    assert cmd[cmd.index("--repo-id") + 1] == "THUDM/chatglm2-6b"
    assert cmd[cmd.index("--revision") + 1] == REVISION
    assert cmd[cmd.index("--dest") + 1] == f"/models/chatglm2-6b/{REVISION}"
    assert cmd[cmd.index("--endpoint") + 1] == "https://hf-mirror.com"
    token_file = cmd[cmd.index("--token-file") + 1]
    mount = next(m for m in fetch["volumeMounts"] if token_file.startswith(m["mountPath"]))
    assert mount["readOnly"] is True
    assert spec["restartPolicy"] == "Never"
    assert job.manifest()["spec"]["backoffLimit"] >= 1
    # The Job's wait covers its own deadline.
    deadline = job.manifest()["spec"]["activeDeadlineSeconds"]
    assert create_timeout_s(job) > deadline


def test_a_failed_fetch_job_is_replaced_on_the_next_up() -> None:
    """Without the annotation a failed Job stays failed and every later `pulumi up` fails on it."""
    job = run_default("dev").one(JOB).manifest()
    assert job["metadata"]["annotations"]["pulumi.com/replaceUnready"] == "true"


def test_fetch_job_deadline_follows_the_args() -> None:
    def make() -> StackArgs:
        stack = dev_args()
        stack.store = ufs_store(job_timeout_s=7200)
        return stack

    job = run_stack("dev", make).one(JOB)
    assert job.manifest()["spec"]["activeDeadlineSeconds"] == 7200
    assert create_timeout_s(job) > 7200


def test_volume_and_claim_size_is_nominal_not_the_ufs_size() -> None:
    """A claim whose request followed ufsSizeGb would be replaced (deleted under running pods)
    whenever the UFS grows: the size must not come from the args at all."""
    plan = run_default("dev")
    pv, pvc = plan.one(PV).manifest()["spec"], plan.one(PVC).manifest()["spec"]
    assert pv["capacity"] == {"storage": NOMINAL_CAPACITY}
    assert pvc["resources"] == {"requests": {"storage": NOMINAL_CAPACITY}}
    assert "capacity_gi" not in {f.name for f in fields(ModelFetchArgs)}


def test_hub_token_reaches_the_job_only_through_a_secret() -> None:
    plan = run_default("dev")
    secrets = [s for s in plan.by_type(SECRET) if "hub-token" in s.name]
    assert len(secrets) == 1
    assert "stringData" in secrets[0].secret_inputs
    for resource in plan.resources:
        assert HUB_TOKEN not in repr(resource.inputs), resource.urn
    env = env_of(pod_spec(plan.one(JOB))["containers"][0])
    assert "HF_TOKEN" not in env


def test_no_token_means_no_secret_and_no_token_flag() -> None:
    def make() -> StackArgs:
        stack = dev_args()
        stack.store = ufs_store(hub_token=None)
        return stack

    plan = run_stack("dev", make)
    assert not [s for s in plan.by_type(SECRET) if "hub-token" in s.name]
    assert "--token-file" not in pod_spec(plan.one(JOB))["containers"][0]["command"]


def test_deployment_waits_for_the_fetch_job_and_mounts_the_weights_read_only() -> None:
    """The GPU pods' compile cache is a directory of the same claim, read-write (so the claim
    itself is not mounted read-only); the weights' mount stays read-only."""
    plan = run_default("dev")
    deployment, job, pvc = plan.one(DEPLOYMENT), plan.one(JOB), plan.one(PVC)
    assert deployment.depends_on(job)
    assert job.depends_on(pvc)
    spec = pod_spec(deployment)
    claim = next(v for v in spec["volumes"] if "persistentVolumeClaim" in v)
    assert claim["persistentVolumeClaim"] == {"claimName": pvc.manifest()["metadata"]["name"]}
    mounts = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == claim["name"]]
    assert mounts == [
        {"name": claim["name"], "mountPath": "/app/models", "readOnly": True},
        {
            "name": claim["name"],
            "mountPath": "/app/compile-cache",
            "subPath": ".llmserve-compile-cache",
        },
    ]
    env = env_of(spec["containers"][0])
    assert env["LLMSERVE_COMPILE_CACHE_DIR"]["value"] == "/app/compile-cache"
    # The Job makes the directory the unprivileged server writes to (kubelet would make it
    # root's), and the volume is shared by every node: every pod reads the first one's cache.
    prepare = pod_spec(job)["initContainers"][0]["command"][2]
    assert "mkdir -p '/models/.llmserve-compile-cache' && chown 10001:10001" in prepare
    assert pvc.manifest()["spec"]["accessModes"] == ["ReadWriteMany"]
    model = env_of(spec["containers"][0])["LLMSERVE_MODEL"]["value"]
    assert model == f"/app/models/chatglm2-6b/{REVISION}"


def test_a_new_revision_replaces_the_job_and_restarts_the_servers() -> None:
    def annotations(plan: Plan) -> dict[str, str]:
        return plan.one(DEPLOYMENT).manifest()["spec"]["template"]["metadata"]["annotations"]

    first = run_default("dev")
    other_rev = "f" * 40

    def make() -> StackArgs:
        stack = dev_args()
        stack.store = ufs_store(revision=other_rev)  # only the store: the rest must follow
        return stack

    second = run_stack("dev", make)
    assert annotations(first)["llm-uk8s/model-revision"] == REVISION
    assert annotations(second)["llm-uk8s/model-revision"] == other_rev
    # Each revision in its own directory: old pods keep reading the old weights untouched.
    model_dirs = [env_of(server_container(p))["LLMSERVE_MODEL"]["value"] for p in (first, second)]
    assert model_dirs == [f"/app/models/chatglm2-6b/{r}" for r in (REVISION, other_rev)]
    second_dest = pod_spec(second.one(JOB))["containers"][0]["command"]
    assert second_dest[second_dest.index("--dest") + 1] == f"/models/chatglm2-6b/{other_rev}"
    first_cmd = pod_spec(first.one(JOB))["containers"][0]["command"]
    second_cmd = pod_spec(second.one(JOB))["containers"][0]["command"]
    assert first_cmd != second_cmd  # a changed pod template: Kubernetes forces a new Job


# --- providers --------------------------------------------------------------------------------


def test_every_kubernetes_object_uses_the_cluster_provider(stack_plan: tuple[str, Plan]) -> None:
    _, plan = stack_plan
    provider = plan.one("pulumi:providers:kubernetes")
    k8s_objects = [r for r in plan.resources if r.is_kubernetes_object]
    assert k8s_objects
    for resource in k8s_objects:
        assert plan.provider_of(resource) is provider, resource.urn


def test_components_refuse_to_run_without_an_explicit_provider() -> None:
    from components.k8s.inference import InferenceService

    def program() -> None:
        InferenceService("llm", gpu_inference())

    with pytest.raises(Exception, match="no Kubernetes provider"):
        from tools.mock_runtime import run_program

        run_program(program)


def test_children_are_parented_to_their_component() -> None:
    plan = run_default("prod")
    for token in ("ModelStore", "GpuDrivers", "InferenceService"):
        component = plan.one(f"llm-uk8s:k8s:{token}")
        assert plan.children(component), token
    deployment = plan.one(DEPLOYMENT)
    assert plan.get(deployment.parent).type == "llm-uk8s:k8s:InferenceService"


# --- GPU settings -----------------------------------------------------------------------------


def daemonset_names(plan: Plan) -> set[str]:
    return {r.manifest()["metadata"]["name"] for r in plan.by_type(DAEMONSET)}


def test_preinstalled_mode_deploys_device_plugin_and_dcgm_only() -> None:
    plan = run_default("dev")
    assert daemonset_names(plan) == {"gpu-device-plugin", "gpu-dcgm-exporter"}
    for ds in plan.by_type(DAEMONSET):
        manifest = ds.manifest()
        spec = manifest["spec"]["template"]["spec"]
        assert manifest["metadata"]["namespace"] == "kube-system"
        assert spec["nodeSelector"] == GPU_SELECTOR
        assert {"key": "nvidia.com/gpu", "operator": "Exists"} in spec["tolerations"]
        assert spec["priorityClassName"] == "system-node-critical"
        for container in spec["containers"]:
            assert not container["securityContext"].get("privileged", False)
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert "ALL" in container["securityContext"]["capabilities"]["drop"]
            image = container["image"]
            assert conventions.require_pinned_image("image", image) == image


def test_daemonset_mode_adds_driver_and_toolkit_and_orders_them() -> None:
    plan = run_default("prod")
    assert daemonset_names(plan) == {
        "gpu-driver",
        "gpu-toolkit",
        "gpu-device-plugin",
        "gpu-dcgm-exporter",
    }
    by_name = {r.manifest()["metadata"]["name"]: r for r in plan.by_type(DAEMONSET)}
    assert by_name["gpu-toolkit"].depends_on(by_name["gpu-driver"])
    assert by_name["gpu-device-plugin"].depends_on(by_name["gpu-toolkit"])
    privileged = {
        name
        for name, r in by_name.items()
        if any(c["securityContext"].get("privileged") for c in pod_spec(r)["containers"])
    }
    assert privileged == {"gpu-driver", "gpu-toolkit"}
    assert pod_spec(by_name["gpu-device-plugin"])["runtimeClassName"] == "nvidia"
    assert plan.by_type("kubernetes:node.k8s.io/v1:RuntimeClass")


def test_inference_waits_for_schedulable_gpus_but_not_for_metrics() -> None:
    """Driver, toolkit, RuntimeClass and device plugin make GPUs usable; a failing DCGM exporter
    must not block serving (this test asserted a wait on every DaemonSet before)."""
    plan = run_default("prod")
    deployment = plan.one(DEPLOYMENT)
    by_name = {r.manifest()["metadata"]["name"]: r for r in plan.by_type(DAEMONSET)}
    for name in ("gpu-driver", "gpu-toolkit", "gpu-device-plugin"):
        assert deployment.depends_on(by_name[name]), name
    assert deployment.depends_on(plan.one("kubernetes:node.k8s.io/v1:RuntimeClass"))
    assert not deployment.depends_on(by_name["gpu-dcgm-exporter"])


def test_gpu_pod_uses_the_nvidia_runtime_class_in_daemonset_mode() -> None:
    prod = run_default("prod")  # daemonset mode
    runtime_class = prod.one("kubernetes:node.k8s.io/v1:RuntimeClass").manifest()
    assert pod_spec(prod.one(DEPLOYMENT))["runtimeClassName"] == runtime_class["metadata"]["name"]
    assert "runtimeClassName" not in pod_spec(run_default("dev").one(DEPLOYMENT))  # preinstalled


def test_service_pdb_and_policy_are_created_after_the_deployment_is_ready() -> None:
    """pulumi-kubernetes waits for a Service until it has an endpoint; no pod exists before the
    download has finished, so a Service created alongside the Deployment times out."""
    plan = run_default("prod")
    deployment = plan.one(DEPLOYMENT)
    service = service_named(plan, "llm")
    assert service.depends_on(deployment)
    assert plan.one("kubernetes:policy/v1:PodDisruptionBudget").depends_on(deployment)
    assert plan.one("kubernetes:networking.k8s.io/v1:NetworkPolicy").depends_on(deployment)
    # Its own wait is short: it starts only once the pods are ready.
    assert create_timeout_s(service) < create_timeout_s(deployment)


def test_gpu_container_requests_gpus_and_lands_on_gpu_nodes() -> None:
    def make() -> StackArgs:
        stack = dev_args()
        stack.inference = replace(stack.inference, gpus_per_replica=2)
        return stack

    plan = run_stack("dev", make)
    spec = pod_spec(plan.one(DEPLOYMENT))
    container = spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert spec["nodeSelector"] == GPU_SELECTOR
    assert {"key": "nvidia.com/gpu", "operator": "Exists"} in spec["tolerations"]
    assert env_of(container)["LLMSERVE_DEVICE"]["value"] == "cuda"
    strategy = plan.one(DEPLOYMENT).manifest()["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 0, "maxUnavailable": 1}


def test_every_taint_key_is_tolerated_everywhere() -> None:
    keys = ["ucloud.cn/gpu", "example.com/dedicated"]

    def make() -> StackArgs:
        stack = prod_args()
        stack.gpu = GpuDriversArgs(
            mode="preinstalled", gpu_node_selector=GPU_SELECTOR, gpu_taint_keys=keys
        )
        stack.inference = replace(stack.inference, gpu_taint_keys=keys)
        return stack

    plan = run_stack("prod", make)
    for r in [*plan.by_type(DAEMONSET), plan.one(DEPLOYMENT)]:
        for key in keys:
            assert {"key": key, "operator": "Exists"} in pod_spec(r)["tolerations"], (r.name, key)


# --- local stack ------------------------------------------------------------------------------


def test_local_stack_has_no_gpu_objects_and_no_fetch_job() -> None:
    plan = run_default("local")
    assert not plan.by_type(DAEMONSET)
    assert not plan.by_type(JOB)
    assert not [r for r in plan.resources if r.type.startswith("ucloud")]
    assert "nvidia" not in repr([r.inputs for r in plan.resources])
    spec = pod_spec(plan.one(DEPLOYMENT))
    assert "nodeSelector" not in spec and "tolerations" not in spec
    env = env_of(spec["containers"][0])
    assert "LLMSERVE_MODEL" not in env  # the image's bundled model
    assert env["LLMSERVE_DEVICE"]["value"] == "cpu"
    pv = plan.one(PV).manifest()["spec"]
    assert pv["hostPath"]["path"] == "/var/lib/llm-uk8s/models" and "nfs" not in pv
    assert plan.outputs["model_dir"] is None
    # CPU pods compile nothing: no compile cache, and the claim stays read-only throughout.
    assert "LLMSERVE_COMPILE_CACHE_DIR" not in env and "LLMSERVE_TENSOR_PARALLEL" not in env
    claim = next(v for v in spec["volumes"] if "persistentVolumeClaim" in v)
    assert claim["persistentVolumeClaim"]["readOnly"] is True
    assert [m["mountPath"] for m in spec["containers"][0]["volumeMounts"]] == [
        "/app/models",
        API_KEY_DIR,
        "/tmp",
        "/dev/shm",
    ]


@pytest.mark.parametrize(("gpus", "expected"), [(1, None), (2, "2"), (4, "4")])
def test_tensor_parallel_over_the_pods_gpus(gpus: int, expected: str | None) -> None:
    def make() -> StackArgs:
        stack = dev_args()
        stack.inference = gpu_inference(gpus_per_replica=gpus, quantization=quantization)
        return stack

    quantization = "int8" if gpus == 1 else "none"  # the config refuses int8 with TP
    env = env_of(server_container(run_stack("dev", make)))
    assert env.get("LLMSERVE_TENSOR_PARALLEL", {}).get("value") == expected
    assert env["LLMSERVE_QUANTIZATION"]["value"] == quantization


# --- the server's pod -------------------------------------------------------------------------


def test_server_pod_is_non_root_read_only_with_writable_tmp_and_shm() -> None:
    spec = pod_spec(run_default("dev").one(DEPLOYMENT))
    container = spec["containers"][0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert container["ports"] == [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]


def test_probes_and_graceful_shutdown_follow_the_args() -> None:
    def make() -> StackArgs:
        stack = dev_args()
        stack.inference = replace(stack.inference, startup_timeout_s=2400, drain_seconds=45)
        return stack

    plan = run_stack("dev", make)
    deployment = plan.one(DEPLOYMENT)
    spec = pod_spec(deployment)
    container = spec["containers"][0]
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 2400
    assert startup["httpGet"]["path"] == "/ready"  # the load, not just the process
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert spec["terminationGracePeriodSeconds"] > 45
    assert "preStop" in container["lifecycle"]
    assert env_of(container)["LLMSERVE_DRAIN_SECONDS"]["value"] == "45"
    assert create_timeout_s(deployment) > 2400
    assert deployment.manifest()["spec"]["progressDeadlineSeconds"] > 2400


def test_api_key_is_generated_secret_and_mounted_as_a_file() -> None:
    plan = run_default("dev")
    assert plan.by_type("random:index/randomPassword:RandomPassword")
    assert "api_key" in plan.secret_outputs
    assert plan.outputs["api_key"] == MOCK_API_KEY
    secret = next(s for s in plan.by_type(SECRET) if "api-key" in s.name)
    assert "stringData" in secret.secret_inputs
    assert secret.raw_inputs["stringData"] == {"api-key": MOCK_API_KEY}
    for resource in plan.resources:
        assert MOCK_API_KEY not in repr(resource.inputs), resource.urn
    container = server_container(plan)
    env = env_of(container)
    assert env["LLMSERVE_API_KEY_FILE"]["value"].startswith(API_KEY_DIR + "/")
    assert "LLMSERVE_API_KEY" not in env
    assert any(m["mountPath"] == API_KEY_DIR for m in container["volumeMounts"])


def test_service_types() -> None:
    dev = service_named(run_default("dev"), "llm").manifest()["spec"]
    assert dev["type"] == "NodePort" and dev["ports"][0]["nodePort"] == 30619
    prod_plan = run_default("prod")
    svc = service_named(prod_plan, "llm").manifest()
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/ucloud-load-balancer-type": "outer"
    }
    assert svc["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    local = service_named(run_default("local"), "llm").manifest()["spec"]
    assert local["type"] == "ClusterIP" and "nodePort" not in local["ports"][0]


def test_network_policy_only_when_asked() -> None:
    policy = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
    assert not run_default("dev").by_type(policy)
    spec = run_default("prod").one(policy).manifest()["spec"]
    sources = spec["ingress"][0]["from"]
    assert {"ipBlock": {"cidr": "203.0.113.0/24"}} in sources
    assert spec["ingress"][0]["ports"] == [{"port": PORT, "protocol": "TCP"}]


def test_pdb_never_blocks_a_single_replica_drain() -> None:
    pdb = run_default("dev").one("kubernetes:policy/v1:PodDisruptionBudget").manifest()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_endpoint_output_for_cluster_ip() -> None:
    plan = run_default("local")
    svc = service_named(plan, "llm").manifest()["metadata"]["name"]
    assert plan.outputs["endpoint"] == f"http://{svc}.llm.svc.cluster.local:{PORT}/v1"


def test_endpoint_output_for_node_port_with_node_address() -> None:
    def make() -> StackArgs:
        stack = dev_args()
        stack.inference = replace(stack.inference, node_address="106.75.1.2")
        return stack

    assert run_stack("dev", make).outputs["endpoint"] == "http://106.75.1.2:30619/v1"


# --- bad args ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: setattr(s, "store", ufs_store(revision="main")), "revision"),
        (
            lambda s: setattr(s, "store", ufs_store(fetch_image="reg/llmserve:latest")),
            "fetch_image",
        ),
        (lambda s: setattr(s, "store", ufs_store(nfs_server=None)), "nfs_server/host_path"),
        (lambda s: setattr(s, "store", ufs_store(model_name="../etc")), "model_name"),
        (lambda s: setattr(s, "gpu", GpuDriversArgs(mode="gpu-operator")), "mode"),
        (lambda s: setattr(s, "gpu", GpuDriversArgs(mode="preinstalled")), "gpu_node_selector"),
        (lambda s: setattr(s, "inference", gpu_inference(service_type="Ingress")), "service_type"),
        (lambda s: setattr(s, "inference", gpu_inference(memory_limit="48 GB")), "memory_limit"),
        (lambda s: setattr(s, "inference", gpu_inference(node_port=8080)), "node_port"),
        (lambda s: setattr(s, "inference", gpu_inference(image="reg/llmserve")), "image"),
        (lambda s: setattr(s, "inference", gpu_inference(quantization="int4")), "quantization"),
    ],
)
def test_bad_args_name_the_field(mutate, field: str) -> None:
    def make() -> StackArgs:
        stack = dev_args()
        mutate(stack)
        return stack

    with pytest.raises(Exception, match=rf"^{field}: ") as info:
        run_stack("dev", make)
    assert "allowed" in str(info.value) or "set exactly one" in str(info.value)


def test_local_args_are_valid_as_given() -> None:
    local_args().store.validate()
    local_args().inference.validate()

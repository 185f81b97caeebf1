"""Each policy, called directly, with resources that pass and resources that fail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from policy.llm_uk8s_rules.k8s import type_token
from tests.policy.harness import (
    POLICIES,
    deployment,
    pod_spec_of,
    resource_violations,
    stack_violations,
)

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
DAEMONSET = "kubernetes:apps/v1:DaemonSet"
JOB = "kubernetes:batch/v1:Job"
CRONJOB = "kubernetes:batch/v1:CronJob"
SERVICE = "kubernetes:core/v1:Service"
PV = "kubernetes:core/v1:PersistentVolume"


def check(policy: str, props: dict[str, Any], rtype: str = DEPLOYMENT, **config: Any) -> list[str]:
    return resource_violations(POLICIES[policy], rtype, props, config)


def test_the_reference_deployment_passes_every_resource_policy() -> None:
    for name, policy in POLICIES.items():
        if name != "exposed-service-requires-api-key":
            assert resource_violations(policy, DEPLOYMENT, deployment()) == [], name


# --- GPU --------------------------------------------------------------------------------------

GPU = "gpu-workloads-request-gpus-and-tolerate-taint"


def test_gpu_without_toleration_fails() -> None:
    d = deployment()
    pod_spec_of(d)["tolerations"] = [{"key": "other", "operator": "Exists"}]
    assert any("does not tolerate the GPU taint 'nvidia.com/gpu'" in v for v in check(GPU, d))


def test_gpu_toleration_by_equal_or_wildcard_passes() -> None:
    for toleration in (
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present"},
        {"operator": "Exists"},
    ):
        d = deployment()
        pod_spec_of(d)["tolerations"] = [toleration]
        assert check(GPU, d) == []


def test_gpu_taint_key_comes_from_config() -> None:
    assert check(GPU, deployment(), gpuTaintKey="ucloud.cn/gpu") != []


def test_gpu_request_without_limit_fails() -> None:
    d = deployment(
        resources={
            "requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        }
    )
    assert any("without a limit" in v for v in check(GPU, d))


def test_cuda_server_without_gpu_fails() -> None:
    d = deployment(resources={"limits": {"cpu": "1", "memory": "1Gi"}})
    assert any("runs on CUDA" in v for v in check(GPU, d))


def test_pinned_to_gpu_nodes_without_gpu_fails_except_daemonsets() -> None:
    d = deployment(resources={"limits": {"cpu": "1", "memory": "1Gi"}}, env=[])
    assert any("requests no nvidia.com/gpu" in v for v in check(GPU, d))
    assert check(GPU, d, DAEMONSET) == []  # the rule reads the resource type, not `kind`


def test_cpu_workload_without_gpu_hints_passes() -> None:
    d = deployment(resources={"limits": {"cpu": "1", "memory": "1Gi"}}, env=[])
    del pod_spec_of(d)["nodeSelector"]
    assert check(GPU, d) == []


# --- limits and probes ------------------------------------------------------------------------

LIMITS = "containers-have-limits"
PROBES = "serving-containers-have-probes"


def test_missing_memory_limit_fails() -> None:
    d = deployment(resources={"limits": {"cpu": "1"}})
    assert check(LIMITS, d) == ["container 'server' has no memory limit"]


def test_missing_resources_fails_for_init_containers_and_jobs() -> None:
    job = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "fetch",
                            "image": "r/i:1",
                            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                        }
                    ],
                    "initContainers": [{"name": "prep", "image": "r/i:1"}],
                }
            }
        }
    }
    assert check(LIMITS, job, JOB) == ["container 'prep' has no cpu or memory limit"]


def test_cronjob_templates_are_checked() -> None:
    cron = {
        "spec": {
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "r/i:1"}]}}}
            }
        }
    }
    assert check(LIMITS, cron, CRONJOB) != []


def test_missing_probes_fail_on_deployments_only() -> None:
    d = deployment()
    del pod_spec_of(d)["containers"][0]["livenessProbe"]
    assert check(PROBES, d) == ["container 'server' has no livenessProbe"]
    assert check(PROBES, d, DAEMONSET) == []


def test_non_workloads_are_ignored() -> None:
    assert check(LIMITS, {"spec": {"type": "ClusterIP"}}, SERVICE) == []


# --- images -----------------------------------------------------------------------------------

IMAGES = "no-latest-or-untagged-images"


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("r/llmserve:latest", ":latest"),
        ("r/llmserve", "untagged"),
        ("localhost:5000/llmserve", "untagged"),
        ("r/x@sha256:abc", "malformed digest"),
        ("", "no image"),
    ],
)
def test_unpinned_images_fail(image: str, problem: str) -> None:
    violations = check(IMAGES, deployment(image=image))
    assert len(violations) == 1 and problem in violations[0]


@pytest.mark.parametrize(
    "image",
    [
        "localhost:5000/llmserve:0.1.0",
        "nvcr.io/nvidia/k8s-device-plugin:v0.20.1",
        "r/x@sha256:" + "0" * 64,
    ],
)
def test_pinned_images_pass(image: str) -> None:
    assert check(IMAGES, deployment(image=image)) == []


# --- volumes ----------------------------------------------------------------------------------

RETAIN = "model-volumes-retain"


@pytest.mark.parametrize(("reclaim", "ok"), [("Retain", True), ("Delete", False), (None, False)])
def test_persistent_volumes_must_retain(reclaim: str | None, ok: bool) -> None:
    spec: dict[str, Any] = {
        "capacity": {"storage": "500Gi"},
        "nfs": {"server": "10.0.0.5", "path": "/"},
    }
    if reclaim:
        spec["persistentVolumeReclaimPolicy"] = reclaim
    assert (check(RETAIN, {"spec": spec}, PV) == []) is ok


# --- secrets in env ---------------------------------------------------------------------------

SECRETS = "no-secret-in-plain-env"


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "LLMSERVE_API_KEY", "value": "abc123"},
        {"name": "HF_TOKEN", "value": "x"},
        {"name": "DB_PASSWORD", "value": "hunter2"},
        {"name": "EXTRA", "value": "hf_abcdefghijklmnopqrstuvwxyz"},
        {"name": "OPENAI", "value": "sk-abcdefghijklmnopqrstuvwxyz"},
    ],
)
def test_plain_secret_env_fails(entry: dict[str, str]) -> None:
    violations = check(SECRETS, deployment(env=[entry]))
    assert len(violations) == 1 and entry["name"] in violations[0]


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "LLMSERVE_API_KEY_FILE", "value": "/var/run/secrets/k"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
        {"name": "LLMSERVE_MAX_BATCH", "value": "64"},
        {"name": "API_KEY", "value": ""},
    ],
)
def test_secret_references_and_harmless_values_pass(entry: dict[str, Any]) -> None:
    assert check(SECRETS, deployment(env=[entry])) == []


# --- exposed services need an API key ----------------------------------------------------------

EXPOSED = "exposed-service-requires-api-key"


def service(kind: str = "NodePort", selector: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "llm", "namespace": "llm"},
        "spec": {
            "type": kind,
            "selector": {"app": "llm"} if selector is None else selector,
            "ports": [{"port": 7861}],
        },
    }


def stack(*objects: dict[str, Any]) -> list[tuple[str, str | None]]:
    return stack_violations(POLICIES[EXPOSED], [(type_token(o), o) for o in objects])


def test_exposed_service_with_keyed_backend_passes() -> None:
    assert stack(service("NodePort"), deployment()) == []
    assert stack(service("LoadBalancer"), deployment()) == []


def test_exposed_service_without_key_fails_and_names_the_service() -> None:
    d = deployment(env=[], volumeMounts=[])
    violations = stack(service("NodePort"), d)
    assert len(violations) == 1
    message, urn = violations[0]
    assert "Service 'llm'" in message and "'server'" in message and urn


def test_key_file_must_come_from_a_secret_volume() -> None:
    d = deployment()
    pod_spec_of(d)["volumes"] = [{"name": "api-key", "emptyDir": {}}]
    assert stack(service("NodePort"), d) != []


def test_key_env_from_secret_ref_passes() -> None:
    d = deployment(
        env=[
            {"name": "LLMSERVE_API_KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
        ],
        volumeMounts=[],
    )
    assert stack(service("LoadBalancer"), d) == []


def test_cluster_ip_needs_no_key() -> None:
    assert stack(service("ClusterIP"), deployment(env=[], volumeMounts=[])) == []


def test_exposed_service_selecting_nothing_fails() -> None:
    assert stack(service("NodePort", {"app": "other"}), deployment()) != []
    assert stack(service("NodePort", {}), deployment()) != []


def test_other_namespaces_do_not_count() -> None:
    d = deployment()
    d["metadata"]["namespace"] = "elsewhere"
    assert stack(service("NodePort"), d) != []


def as_pod(d: dict[str, Any]) -> dict[str, Any]:
    """The Deployment's pod template as a bare Pod: labels on the Pod's own metadata."""
    template = d["spec"]["template"]
    metadata = {**d["metadata"], "labels": template["metadata"]["labels"]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def as_cronjob(d: dict[str, Any]) -> dict[str, Any]:
    """The Deployment's pod template under a CronJob's jobTemplate."""
    job_spec = {"template": d["spec"]["template"]}
    spec = {"schedule": "0 * * * *", "jobTemplate": {"spec": job_spec}}
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": d["metadata"], "spec": spec}


@pytest.mark.parametrize("wrap", [as_pod, as_cronjob])
def test_pods_and_cronjobs_are_found_behind_a_service(
    wrap: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """Their labels sit elsewhere than a Deployment's template; they must still be backends."""
    assert stack(service("NodePort"), wrap(deployment())) == []
    violations = stack(service("NodePort"), wrap(deployment(env=[], volumeMounts=[])))
    assert len(violations) == 1 and "takes no API key" in violations[0][0]


# --- autoscalers and scrapers -----------------------------------------------------------------

SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
BOUNDED = "scaledobject-replicas-bounded"
SCRAPERS = "scrapers-reach-the-metrics-port-only"


def scaled_object(**spec: Any) -> dict[str, Any]:
    base = {
        "scaleTargetRef": {"kind": "Deployment", "name": "inference"},
        "minReplicaCount": 1,
        "maxReplicaCount": 2,
    }
    return {"spec": {**base, **spec}}


def test_a_bounded_scaled_object_passes() -> None:
    assert check(BOUNDED, scaled_object(), SCALED_OBJECT) == []
    assert check(BOUNDED, scaled_object(maxReplicaCount=2.0), SCALED_OBJECT) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"maxReplicaCount": None}, "sets no maxReplicaCount"),
        ({"maxReplicaCount": 65}, "above 64"),
        ({"minReplicaCount": 0}, "minReplicaCount must be 1 or more"),
        ({"minReplicaCount": 3}, "above maxReplicaCount 2"),
        ({"scaleTargetRef": {"kind": "StatefulSet", "name": "x"}}, "must scale a Deployment"),
    ],
)
def test_an_unbounded_scaled_object_fails(spec: dict[str, Any], expected: str) -> None:
    props = scaled_object(**spec)
    if spec.get("maxReplicaCount", 0) is None:
        del props["spec"]["maxReplicaCount"]
    assert any(expected in v for v in check(BOUNDED, props, SCALED_OBJECT))


def test_the_replica_ceiling_comes_from_config() -> None:
    assert check(BOUNDED, scaled_object(), SCALED_OBJECT, maxReplicas=1) != []


def pod_monitor(**endpoint: Any) -> dict[str, Any]:
    return {"spec": {"podMetricsEndpoints": [{"port": "http", "path": "/metrics", **endpoint}]}}


def test_a_pod_monitor_on_the_metrics_port_passes() -> None:
    assert check(SCRAPERS, pod_monitor(), POD_MONITOR) == []


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ({"port": None, "targetPort": 7861}, "named port"),
        ({"path": "/v1/models"}, "only /metrics"),
        ({"relabelings": [{"targetLabel": "__address__", "replacement": "x:22"}]}, "__address__"),
    ],
)
def test_a_pod_monitor_off_the_metrics_port_fails(endpoint: dict[str, Any], expected: str) -> None:
    props = pod_monitor(**endpoint)
    props["spec"]["podMetricsEndpoints"][0] = {
        k: v for k, v in props["spec"]["podMetricsEndpoints"][0].items() if v is not None
    }
    assert any(expected in v for v in check(SCRAPERS, props, POD_MONITOR))


def test_a_network_policy_admitting_a_namespace_must_name_ports() -> None:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    scoped = {"spec": {"ingress": [{"from": [peer], "ports": [{"port": 7861}]}]}}
    assert check(SCRAPERS, scoped, NETWORK_POLICY) == []
    everything = {"spec": {"ingress": [{"from": [peer]}]}}
    assert any("every port" in v for v in check(SCRAPERS, everything, NETWORK_POLICY))

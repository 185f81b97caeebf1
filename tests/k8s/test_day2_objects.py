"""KEDA, Prometheus-Operator and patch objects against their schemas, and the day-2 helpers.

The vendored CRD schemas must be able to fail: a misspelt field or a wrong type is caught,
exactly as kubernetes-validate's strict mode catches them for built-in kinds."""

from __future__ import annotations

import copy
import json

import pytest
from kubernetes_validate.utils import major_minor

from components.errors import ConfigError
from components.k8s import keda
from components.k8s.autoscaling import QueueAutoscalerArgs, queue_query, scaled_object_spec
from components.k8s.conventions import image_version, object_labels, require_label_value
from components.k8s.gpu_drivers import GpuDriversArgs, uk8s_plugin_patch_spec
from components.k8s.inference import network_policy_spec
from components.k8s.monitoring import pod_monitor_spec
from tests.k8s.stacks import gpu_inference
from tests.k8s.validate import (
    CRD_KINDS,
    CRD_SCHEMAS,
    KEDA_RELEASE,
    PROMETHEUS_OPERATOR_RELEASES,
    crd_errors,
    crd_schema,
    crd_schema_file,
    patch_errors,
    schema_errors,
)
from tests.stack.stack_values import planned


def kind_manifest(plan_stack: str, kind: str) -> dict:
    return next(m for m in planned(plan_stack).manifests() if m["kind"] == kind)


@pytest.mark.parametrize(
    ("kind", "release"),
    [("ScaledObject", KEDA_RELEASE)] + [("PodMonitor", r) for r in PROMETHEUS_OPERATOR_RELEASES],
)
def test_prods_custom_resources_are_valid(kind: str, release: str) -> None:
    assert crd_errors(kind_manifest("prod", kind), release) == []


def test_every_vendored_schema_is_used_and_every_used_one_vendored() -> None:
    wanted = {
        crd_schema_file(release, api_version, kind)
        for (api_version, kind), releases in CRD_KINDS.items()
        for release in releases
    }
    assert wanted == set(CRD_SCHEMAS.glob("*/*.json"))
    for path in wanted:
        assert json.loads(path.read_text())["type"] == "object", path


def test_the_keda_schema_is_the_pinned_charts() -> None:
    """Bumping the chart without re-vendoring its CRD schema fails here (patch releases of 2.16
    share one CRD: SOURCES.md)."""
    vendored = KEDA_RELEASE.removeprefix("keda-")
    assert major_minor(vendored) == major_minor(keda.CHART_VERSION), (
        f"KEDA chart {keda.CHART_VERSION} but the vendored ScaledObject schema is {vendored}: "
        "re-vendor it (tests/k8s/crd_schemas/vendor.py)"
    )


def scaled_object() -> dict:
    return copy.deepcopy(kind_manifest("prod", "ScaledObject"))


def test_the_keda_schema_is_2_16s() -> None:
    """initialCooldownPeriod came with KEDA 2.16 (the 2.10 schema vendored before refused it);
    fallback.behavior only with 2.17."""
    newer = scaled_object()
    newer["spec"]["initialCooldownPeriod"] = 120
    assert schema_errors(newer) == []
    newer["spec"]["fallback"] = {"failureThreshold": 3, "replicas": 1, "behavior": "static"}
    (error,) = schema_errors(newer)
    assert "behavior" in error and KEDA_RELEASE in error


def test_a_misspelt_scaled_object_field_is_caught() -> None:
    broken = scaled_object()
    broken["spec"]["maxReplicas"] = broken["spec"].pop("maxReplicaCount")
    (error,) = schema_errors(broken)
    assert "maxReplicas" in error


def test_a_wrong_type_in_a_scaled_object_is_caught() -> None:
    broken = scaled_object()
    broken["spec"]["minReplicaCount"] = "one"
    assert schema_errors(broken)
    broken = scaled_object()
    broken["spec"]["triggers"][0]["metadata"]["threshold"] = 1
    (error,) = schema_errors(broken)
    assert "triggers.0.metadata.threshold" in error


def test_the_charts_stabilization_window_bound_is_checked() -> None:
    """The chart's CRD caps the HPA stabilisation window at 3600 s, as the HPA API does."""
    broken = scaled_object()
    behavior = broken["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    behavior["scaleDown"]["stabilizationWindowSeconds"] = 3601
    (error,) = schema_errors(broken)
    assert "stabilizationWindowSeconds" in error and "3600" in error


def test_a_misspelt_pod_monitor_field_is_caught() -> None:
    broken = copy.deepcopy(kind_manifest("prod", "PodMonitor"))
    broken["spec"]["namespaceSelecter"] = broken["spec"].pop("namespaceSelector")
    assert any("namespaceSelecter" in e for e in schema_errors(broken))
    endpoint = broken["spec"]["podMetricsEndpoints"][0]
    del broken["spec"]["namespaceSelecter"]
    endpoint["paths"] = endpoint.pop("path")
    assert any("paths" in e for e in schema_errors(broken))


def test_a_pod_monitor_must_suit_every_vendored_operator_release() -> None:
    """scrapeClass exists in 0.80.1 only: the object is refused for 0.57.0 alone."""
    newer = copy.deepcopy(kind_manifest("prod", "PodMonitor"))
    newer["spec"]["scrapeClass"] = "default"
    oldest, newest = PROMETHEUS_OPERATOR_RELEASES
    assert crd_errors(newer, newest) == []
    assert [e for e in schema_errors(newer) if "scrapeClass" in e and oldest in e]
    assert not [e for e in schema_errors(newer) if newest in e]


def test_custom_resource_metadata_is_checked_as_object_meta() -> None:
    broken = copy.deepcopy(kind_manifest("prod", "PodMonitor"))
    broken["metadata"]["lables"] = {}
    assert len(schema_errors(broken)) == len(PROMETHEUS_OPERATOR_RELEASES)
    schema = crd_schema(KEDA_RELEASE, "keda.sh/v1alpha1", "ScaledObject")
    assert schema["additionalProperties"] is False


def test_the_device_plugin_patch_is_a_valid_partial_daemonset() -> None:
    patch = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "nvidia-device-plugin-daemonset", "namespace": "kube-system"},
        "spec": uk8s_plugin_patch_spec(),
    }
    assert patch_errors(patch) == []
    assert schema_errors(patch)  # as a whole object it would lack the selector and template
    broken = copy.deepcopy(patch)
    broken["spec"]["template"]["spec"]["nodeSelectr"] = broken["spec"]["template"]["spec"].pop(
        "nodeSelector"
    )
    assert any("nodeSelectr" in e for e in patch_errors(broken))


# --- helpers ----------------------------------------------------------------------------------


def test_image_version_is_a_label_value() -> None:
    assert image_version("uhub.service.ucloud.cn/o/llm:0.1.0") == "0.1.0"
    assert image_version("localhost:5000/llm:v2-rc.1") == "v2-rc.1"
    assert image_version("r/llm@sha256:" + "ab" * 32) == "sha256-" + "ab" * 6
    assert image_version("r/llm:1.0@sha256:" + "cd" * 32) == "sha256-" + "cd" * 6
    for image in ("registry/llm:" + "x" * 128, "registry/llm:_a_"):
        require_label_value("version", image_version(image))


def test_labels_refuse_what_kubernetes_refuses() -> None:
    with pytest.raises(ConfigError, match="instance: invalid value 'llm uk8s'"):
        object_labels("a", "b", instance="llm uk8s", version="1")
    with pytest.raises(ConfigError, match="version"):
        object_labels("a", "b", instance="x", version="")


def autoscaler(**overrides: object) -> QueueAutoscalerArgs:
    base: dict = {
        "namespace": "llm",
        "deployment_name": "inference",
        "served_model_name": "chatglm2-6b",
        "prometheus_url": "http://prometheus:9090",
    }
    return QueueAutoscalerArgs(**(base | overrides))  # type: ignore[arg-type]


def test_autoscaler_args_name_the_bad_field() -> None:
    with pytest.raises(ConfigError, match="max_replicas: invalid value 1; allowed: at least"):
        autoscaler(min_replicas=2, max_replicas=1).validate()
    with pytest.raises(ConfigError, match="prometheus_url"):
        autoscaler(prometheus_url="prometheus:9090").validate()
    with pytest.raises(ConfigError, match="min_replicas"):
        autoscaler(min_replicas=0).validate()
    # periodSeconds of an HPA scaling policy is at most 1800: the API server would refuse more.
    with pytest.raises(ConfigError, match="drain_grace_s: invalid value 1801"):
        autoscaler(drain_grace_s=1801).validate()
    autoscaler(drain_grace_s=1800).validate()


def test_the_scale_down_window_never_undercuts_the_drain() -> None:
    short = autoscaler(drain_grace_s=50)
    long = autoscaler(drain_grace_s=900)
    assert short.scale_down_window_s == 300 and long.scale_down_window_s == 900
    behavior = scaled_object_spec(long, "d")["advanced"]["horizontalPodAutoscalerConfig"]
    assert behavior["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 900
    assert queue_query("m") == 'sum(vllm:num_requests_waiting{model_name="m"})'


def test_pod_monitor_scrapes_the_named_port_only() -> None:
    spec = pod_monitor_spec({"app": "x"}, "llm")
    assert spec["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]


def test_network_policy_without_scrapers_admits_no_other_namespace() -> None:
    spec = network_policy_spec(gpu_inference(network_policy=True), {"app": "x"})
    assert not any("namespaceSelector" in s for rule in spec["ingress"] for s in rule["from"])
    scraped = network_policy_spec(
        gpu_inference(network_policy=True, metrics_scraper_namespace="monitoring"), {"app": "x"}
    )
    assert scraped["ingress"][1]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


def test_no_patch_without_gpu_daemonsets() -> None:
    with pytest.raises(ConfigError, match="disable_uk8s_device_plugin"):
        GpuDriversArgs(mode="none", disable_uk8s_device_plugin=True).validate()

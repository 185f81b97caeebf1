"""Day-2 operations in the whole program: autoscaling, monitoring, placement, labels, and the
old UK8S device plugin, per stack."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from components.errors import ConfigError
from components.k8s import gpu_drivers, keda, monitoring
from components.k8s.inference import PORT, ZONE_LABEL
from components.stack.config import parse
from tests.stack.stack_values import fed_by, raw_values
from tools.mock_runtime import Plan, RecordedResource
from tools.plan import plan_stack, write_plan
from tools.plan_diff import diff_plans

SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
CHART = "kubernetes:helm.sh/v4:Chart"
PATCH = "kubernetes:apps/v1:DaemonSetPatch"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"


def deployment(plan: Plan) -> RecordedResource:
    return plan.one(DEPLOYMENT)


def pod_spec(plan: Plan) -> dict:
    return deployment(plan).inputs["spec"]["template"]["spec"]


# --- autoscaling ------------------------------------------------------------------------------


def test_prod_scales_the_deployment_on_queue_depth(prod: Plan) -> None:
    scaled = prod.one(SCALED_OBJECT)
    spec = scaled.inputs["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 2)
    target = spec["scaleTargetRef"]
    assert target["kind"] == "Deployment"
    assert target["name"] == deployment(prod).outputs["metadata"]["name"]
    assert fed_by(scaled, "spec", deployment(prod))
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert (
        trigger["metadata"]["query"] == 'sum(vllm:num_requests_waiting{model_name="chatglm2-6b"})'
    )
    assert trigger["metadata"]["threshold"] == "4"
    assert trigger["metadata"]["serverAddress"] == "http://uk8s-prometheus.uk8s-monitor.svc:9090"


def test_scale_down_waits_for_a_drain(prod: Plan) -> None:
    """The stabilisation window covers a pod's whole drain, and pods leave one drain apart."""
    grace = pod_spec(prod)["terminationGracePeriodSeconds"]
    scale_down = prod.one(SCALED_OBJECT).inputs["spec"]["advanced"][
        "horizontalPodAutoscalerConfig"
    ]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= grace
    assert scale_down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": grace}]


def test_an_autoscaled_deployment_leaves_replicas_to_the_hpa(dev: Plan, prod: Plan) -> None:
    assert "replicas" not in deployment(prod).inputs["spec"]
    assert deployment(dev).inputs["spec"]["replicas"] == 1
    assert dev.by_type(SCALED_OBJECT) == [] and dev.by_type(CHART) == []


def test_keda_is_a_pinned_chart_the_scaled_object_waits_for(prod: Plan) -> None:
    chart = prod.one(CHART)
    assert chart.inputs["chart"] == "keda" and chart.inputs["version"] == keda.CHART_VERSION
    assert chart.inputs["repositoryOpts"] == {"repo": "https://kedacore.github.io/charts"}
    assert chart.inputs["namespace"] == "keda"
    assert prod.one(SCALED_OBJECT).depends_on(chart)


def test_a_cluster_with_keda_gets_no_chart() -> None:
    plan = plan_stack("prod", overrides={"installKeda": False})
    assert plan.by_type(CHART) == [] and len(plan.by_type(SCALED_OBJECT)) == 1


def test_max_replicas_beyond_the_pools_gpus_is_refused_with_the_arithmetic() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(raw_values("prod", maxReplicas=3), "prod")
    assert (
        "llm-uk8s:maxReplicas = 3: the node pool gives at most gpuNodeCount 2 x "
        "(gpusPerNode 1 // gpusPerReplica 1) = 2 replica(s); allowed: maxReplicas <= 2"
    ) in str(caught.value)
    parse(raw_values("prod", maxReplicas=4, gpusPerNode=2), "prod")  # 2 x (2 // 1) = 4
    with pytest.raises(ConfigError, match="less than minReplicas 2"):
        parse(raw_values("prod", minReplicas=2, maxReplicas=1), "prod")


# --- monitoring -------------------------------------------------------------------------------


def test_pods_carry_the_scrape_annotations(stack_plan) -> None:
    _, plan = stack_plan
    annotations = deployment(plan).inputs["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_prod_ships_the_dashboard_and_a_pod_monitor(prod: Plan, dev: Plan) -> None:
    (dashboard,) = prod.by_type(CONFIG_MAP)
    assert dashboard.inputs["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(dashboard.inputs["data"][monitoring.DASHBOARD_KEY])
    assert shipped == json.loads(monitoring.DASHBOARD_FILE.read_text())
    spec = prod.one(POD_MONITOR).inputs["spec"]
    assert spec["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    assert (
        spec["selector"]["matchLabels"]
        == deployment(prod).inputs["spec"]["selector"]["matchLabels"]
    )
    assert spec["namespaceSelector"] == {"matchNames": ["llm"]}
    assert dev.by_type(CONFIG_MAP) == [] and dev.by_type(POD_MONITOR) == []


def test_the_network_policy_admits_the_monitoring_namespace_to_the_metrics_port_only(
    prod: Plan,
) -> None:
    ingress = prod.one("kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs["spec"]["ingress"]
    scrapers = [rule for rule in ingress if any("namespaceSelector" in f for f in rule["from"])]
    assert scrapers == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "uk8s-monitor"}
                    }
                }
            ],
            "ports": [{"port": PORT, "protocol": "TCP"}],
        }
    ]
    without = plan_stack("prod", overrides={"monitoring": False, "prometheusOperator": False})
    ingress = without.one("kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs["spec"]["ingress"]
    assert not [r for r in ingress if any("namespaceSelector" in f for f in r["from"])]


# --- placement and hygiene --------------------------------------------------------------------


def test_replicas_spread_over_zones_with_a_priority_class(stack_plan) -> None:
    _, plan = stack_plan
    spec = pod_spec(plan)
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == ZONE_LABEL and spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert (
        spread["labelSelector"]["matchLabels"]
        == deployment(plan).inputs["spec"]["selector"]["matchLabels"]
    )
    priority = plan.one("kubernetes:scheduling.k8s.io/v1:PriorityClass")
    assert spec["priorityClassName"] == priority.outputs["metadata"]["name"]
    assert 0 < priority.inputs["value"] < 1_000_000_000 and not priority.inputs["globalDefault"]


def test_the_server_bounds_its_node_disk(stack_plan) -> None:
    _, plan = stack_plan
    container = pod_spec(plan)["containers"][0]
    resources = container["resources"]
    assert resources["requests"]["ephemeral-storage"] and resources["limits"]["ephemeral-storage"]
    tmp = next(v for v in pod_spec(plan)["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["sizeLimit"] == "4Gi"  # the compile cache's /tmp, inside the limit


def test_every_object_names_its_instance_and_version(stack_plan) -> None:
    stack, plan = stack_plan
    checked = 0
    for resource in plan.resources:
        if not resource.is_kubernetes_object or resource.type == PATCH:
            continue  # a patch edits UK8S's object; it must not claim it
        labels = resource.manifest()["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/instance") == f"llm-uk8s-{stack}", resource.urn
        assert labels.get("app.kubernetes.io/version"), resource.urn
        checked += 1
    assert checked >= 8


# --- the old UK8S device plugin ---------------------------------------------------------------


def test_uk8s_device_plugin_is_patched_to_run_nowhere(dev: Plan, local: Plan) -> None:
    patch = dev.one(PATCH)
    assert patch.inputs["metadata"] == {
        "name": "nvidia-device-plugin-daemonset",
        "namespace": "kube-system",
    }
    assert patch.inputs["spec"] == {
        "template": {"spec": {"nodeSelector": gpu_drivers.NO_NODE_SELECTOR}}
    }
    ours = next(r for r in dev.by_type("kubernetes:apps/v1:DaemonSet") if "device-plugin" in r.name)
    assert patch.depends_on(ours)
    assert local.by_type(PATCH) == []


def test_switching_the_patch_off_deletes_only_the_patch(tmp_path: Path) -> None:
    """The undo path: `disableUk8sDevicePlugin: false` and `pulumi up` remove the patch, and
    nothing else changes."""
    base, head = tmp_path / "base", tmp_path / "head"
    write_plan(plan_stack("dev"), base)
    write_plan(plan_stack("dev", overrides={"disableUk8sDevicePlugin": False}), head)
    diff = diff_plans(base, head)
    assert [(s.op, s.type) for s in diff.steps] == [("delete", PATCH)]


def test_the_patch_needs_a_ucloud_stack_with_gpu_daemonsets() -> None:
    with pytest.raises(ConfigError, match="disableUk8sDevicePlugin = true"):
        parse(raw_values("local", disableUk8sDevicePlugin=True), "local")


def test_the_policy_pack_covers_the_new_objects(prod: Plan) -> None:
    """prod passes (test_kubernetes_graph); the same check fails an unbounded autoscaler and a
    PodMonitor that scrapes the API path."""
    from tests.policy.harness import all_violations

    broken = copy.deepcopy(prod.manifests())
    for manifest in broken:
        if manifest["kind"] == "ScaledObject":
            manifest["spec"]["maxReplicaCount"] = 100
        if manifest["kind"] == "PodMonitor":
            manifest["spec"]["podMetricsEndpoints"][0]["path"] = "/v1/models"
    found = all_violations(broken)
    assert any(v.startswith("scaledobject-replicas-bounded") for v in found)
    assert any(v.startswith("scrapers-reach-the-metrics-port-only") for v in found)

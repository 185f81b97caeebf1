"""`QueueAutoscaler`: a KEDA ScaledObject that scales the inference Deployment on queue depth.

Why queue depth: a GPU server is saturated when requests wait for a batch slot, long before CPU
or memory say so. KEDA's Prometheus scaler reads `sum(vllm:num_requests_waiting{model_name=...})`
(the server's own gauge, vLLM's name) and, with metricType AverageValue, the HPA it creates
divides that by the replicas: one more replica per `waiting_target` waiting requests.

Scale-down waits for in-flight requests: a pod that leaves is drained (preStop sleep, then the
server's drain, all inside terminationGracePeriodSeconds). The HPA's scale-down stabilisation
window is at least that grace period (and at least the HPA default of 300 s), and scale-down
removes one pod per grace period, so a second pod is only asked to go once the first has
drained.

When the node pool is full (every GPU taken) a new replica stays Pending: nothing else
happens until a GPU frees up; the stack config refuses a `maxReplicas` the pool can never
schedule (components/stack/config.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.k8s.conventions import (
    PART_OF,
    bad_value,
    child_options,
    kubernetes_provider,
    object_labels,
    require_label_value,
    require_positive_int,
)

TYPE_TOKEN = "llm-uk8s:k8s:QueueAutoscaler"
API_VERSION = "keda.sh/v1alpha1"
KIND = "ScaledObject"
QUEUE_METRIC = "vllm:num_requests_waiting"
# The HPA's own scale-down stabilisation default (Kubernetes HPA docs, behavior.scaleDown).
HPA_DEFAULT_SCALE_DOWN_S = 300


@dataclass
class QueueAutoscalerArgs:
    namespace: pulumi.Input[str]
    deployment_name: pulumi.Input[str]
    served_model_name: str
    prometheus_url: str
    min_replicas: int = 1
    max_replicas: int = 1
    # Waiting requests per replica above which a replica is added.
    waiting_target: int = 4
    # The Deployment's terminationGracePeriodSeconds: how long one pod takes to drain.
    drain_grace_s: int = 50
    polling_s: int = 15
    instance: str = PART_OF
    version: str = "unknown"
    # What the ScaledObject must wait for: KEDA's CRD and operator (Keda.ready), the Deployment.
    wait_for: Sequence[pulumi.Resource] = field(default_factory=list)

    def validate(self) -> None:
        require_positive_int("min_replicas", self.min_replicas, maximum=64)
        require_positive_int("max_replicas", self.max_replicas, maximum=64)
        if self.max_replicas < self.min_replicas:
            raise bad_value(
                "max_replicas", self.max_replicas, f"at least min_replicas ({self.min_replicas})"
            )
        require_positive_int("waiting_target", self.waiting_target, maximum=10000)
        # It becomes the scale-down policy's periodSeconds, which the HPA API caps at 1800
        # (autoscaling/v2 HPAScalingPolicy), and the stabilisation window (KEDA's CRD: <= 3600).
        require_positive_int("drain_grace_s", self.drain_grace_s, maximum=1800)
        require_positive_int("polling_s", self.polling_s, minimum=5, maximum=600)
        if not self.prometheus_url.startswith(("http://", "https://")):
            raise bad_value("prometheus_url", self.prometheus_url, "an http(s):// URL")
        require_label_value("instance", self.instance)
        require_label_value("version", self.version)

    @property
    def scale_down_window_s(self) -> int:
        return max(HPA_DEFAULT_SCALE_DOWN_S, self.drain_grace_s)


def queue_query(served_model_name: str) -> str:
    return f'sum({QUEUE_METRIC}{{model_name="{served_model_name}"}})'


def scaled_object_spec(
    args: QueueAutoscalerArgs, deployment_name: pulumi.Input[str]
) -> dict[str, Any]:
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment_name},
        "minReplicaCount": args.min_replicas,
        "maxReplicaCount": args.max_replicas,
        "pollingInterval": args.polling_s,
        "advanced": {
            "horizontalPodAutoscalerConfig": {
                "behavior": {
                    "scaleDown": {
                        "stabilizationWindowSeconds": args.scale_down_window_s,
                        # One pod at a time, one drain apart.
                        "policies": [
                            {"type": "Pods", "value": 1, "periodSeconds": args.drain_grace_s}
                        ],
                    }
                }
            }
        },
        "triggers": [
            {
                "type": "prometheus",
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": args.prometheus_url,
                    "query": queue_query(args.served_model_name),
                    "threshold": str(args.waiting_target),
                },
            }
        ],
    }


class QueueAutoscaler(pulumi.ComponentResource):
    """One ScaledObject for the inference Deployment."""

    scaled_object: k8s.apiextensions.CustomResource

    def __init__(
        self, name: str, args: QueueAutoscalerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        provider = kubernetes_provider(opts)
        super().__init__(TYPE_TOKEN, name, None, opts)
        labels = object_labels("llmserve", name, instance=args.instance, version=args.version)
        self.scaled_object = k8s.apiextensions.CustomResource(
            name,
            api_version=API_VERSION,
            kind=KIND,
            metadata={"namespace": args.namespace, "labels": labels},
            spec=scaled_object_spec(args, args.deployment_name),
            opts=child_options(self, provider, depends_on=list(args.wait_for)),
        )
        self.register_outputs({"max_replicas": args.max_replicas})

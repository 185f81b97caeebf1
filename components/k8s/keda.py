"""`Keda`: KEDA, the operator that turns a ScaledObject into an HPA fed by Prometheus.

Installed from its pinned Helm chart through pulumi-kubernetes' `helm.v4.Chart` (rendered by
the provider, every object a Pulumi resource; no Tiller, no release secret). The chart ships
the CRDs (ScaledObject, ...) and pulumi-kubernetes applies them first.

Version: KEDA chart 2.16.0 (app 2.16.0), from https://kedacore.github.io/charts (kedacore/charts
release v2.16.0). KEDA 2.16 supports Kubernetes 1.29-1.31 (keda.sh/docs/2.16/operate/cluster,
"Kubernetes Compatibility"); the stack config warns outside that window. Tests validate the
ScaledObject against this chart's CRD schema (tests/k8s/crd_schemas/keda-2.16.1: KEDA's CRDs are
the same in 2.16.0 and 2.16.1); moving the pin to another minor fails them until it is
re-vendored.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.k8s.conventions import (
    PART_OF,
    child_options,
    kubernetes_provider,
    object_labels,
    require_dns_label,
    require_label_value,
)

TYPE_TOKEN = "llm-uk8s:k8s:Keda"
CHART = "keda"
CHART_VERSION = "2.16.0"
CHART_REPO = "https://kedacore.github.io/charts"
# Kubernetes minors KEDA 2.16 supports (keda.sh/docs/2.16/operate/cluster).
SUPPORTED_K8S_MINORS = range(29, 32)
NAMESPACE = "keda"


@dataclass
class KedaArgs:
    namespace: str = NAMESPACE
    chart_version: str = CHART_VERSION
    instance: str = PART_OF

    def validate(self) -> None:
        require_dns_label("namespace", self.namespace)
        require_label_value("chart_version", self.chart_version)
        require_label_value("instance", self.instance)


class Keda(pulumi.ComponentResource):
    """The `keda` namespace and the KEDA chart in it; `ready` is what a ScaledObject waits for
    (its CRD and the operator that acts on it)."""

    chart: k8s.helm.v4.Chart

    def __init__(
        self, name: str, args: KedaArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        provider = kubernetes_provider(opts)
        super().__init__(TYPE_TOKEN, name, None, opts)
        labels = object_labels("keda", name, instance=args.instance, version=args.chart_version)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": args.namespace, "labels": labels},
            opts=child_options(self, provider),
        )
        self.chart = k8s.helm.v4.Chart(
            name,
            chart=CHART,
            version=args.chart_version,
            repository_opts=k8s.helm.v4.RepositoryOptsArgs(repo=CHART_REPO),
            namespace=args.namespace,
            opts=child_options(self, provider, depends_on=[self.namespace]),
        )
        self.register_outputs({"namespace": args.namespace, "chart_version": args.chart_version})

    @property
    def ready(self) -> list[pulumi.Resource]:
        return [self.chart]

"""llm-uk8s: read the stack's config, compose the components into one graph, export outputs.

UFS -> mount point -> PV -> claim -> fetch Job -> Deployment -> Service, and
cluster -> GPU nodes -> Kubernetes provider -> GPU DaemonSets (device plugin) -> Deployment.

Composition only: every setting reaches its component through the config's sections
(components/stack/config.py, `cfg.cluster_args()` ...); this file wires one component's outputs
into the next.
"""

import pulumi
import pulumi_kubernetes as k8s

from components.errors import ConfigError
from components.k8s.autoscaling import QueueAutoscaler
from components.k8s.gpu_drivers import GpuDrivers
from components.k8s.inference import InferenceService
from components.k8s.keda import Keda
from components.k8s.model_fetch import ModelFetch
from components.k8s.monitoring import Monitoring
from components.stack import config
from components.ucloud.cluster import GpuCluster, local_provider
from components.ucloud.model_volume import ModelVolume
from components.ucloud.preflight.in_pulumi import OFFLINE_ESTIMATE, run_if_credentials
from components.ucloud.preflight.run import PreflightError

try:
    cfg = config.load()
    # With UCloud keys: the live read-only checks of `make preflight`, before anything is
    # registered; every problem at once. Never under the mock runtime (`make plan`, the tests).
    estimate = run_if_credentials(cfg) if cfg.preflight else None
except (ConfigError, PreflightError) as error:
    raise pulumi.RunError(str(error)) from None  # the message alone, no traceback

nfs_server: pulumi.Input[str] | None = None
node_address: pulumi.Input[str] | None = None
if cfg.uses_ucloud:
    cluster = GpuCluster("gpu", cfg.cluster_args())
    volume = ModelVolume(
        "models", cfg.model_volume_args(vpc_id=cluster.vpc_id, subnet_id=cluster.subnet_id)
    )
    provider = cluster.provider
    nfs_server = volume.mount_point_ip
    node_address = cluster.node_ips.apply(lambda ips: ips[0] if ips else "")
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("clusterId", cluster.cluster_id)
    pulumi.export("natPublicIp", cluster.nat_public_ip)
    pulumi.export("ufsVolumeId", volume.volume_id)
    pulumi.export("ufsMountIp", volume.mount_point_ip)
    pulumi.export("estimatedCost", estimate if estimate is not None else OFFLINE_ESTIMATE)
else:
    provider = local_provider(cfg.kube_context)

on_cluster = pulumi.ResourceOptions(provider=provider)
namespace = k8s.core.v1.Namespace(
    "namespace",
    metadata={
        "name": cfg.namespace,
        "labels": {
            "app.kubernetes.io/part-of": "llm-uk8s",
            "app.kubernetes.io/instance": cfg.instance,
            "app.kubernetes.io/version": cfg.app_version,
        },
    },
    opts=on_cluster,
)
namespace_name = namespace.metadata["name"]

drivers = GpuDrivers("gpu-drivers", cfg.gpu_drivers_args(), opts=on_cluster)

model = ModelFetch(
    "model-store",  # the resource name from when the class was ModelStore: it is in the URNs
    cfg.model_fetch_args(
        namespace=namespace_name, nfs_server=nfs_server, hub_token=config.hub_token()
    ),
    opts=on_cluster,
)

inference = InferenceService(
    "inference",
    cfg.inference_args(
        namespace=namespace_name,
        model_claim_name=model.claim_name,
        model_dir=model.model_dir,
        model_revision=model.revision,
        runtime_class_name=drivers.runtime_class_name,
        node_address=node_address,
        wait_for=[*model.dependencies, *drivers.gpu_ready],
    ),
    opts=on_cluster,
)

keda_args = cfg.keda_args()
keda = Keda("keda", keda_args, opts=on_cluster) if keda_args else None
autoscaler_args = cfg.autoscaler_args(
    namespace=namespace_name,
    deployment_name=inference.deployment_name,
    wait_for=[inference.deployment, *(keda.ready if keda else [])],
)
if autoscaler_args:
    QueueAutoscaler("inference-autoscaler", autoscaler_args, opts=on_cluster)

monitoring_args = cfg.monitoring_args(namespace=namespace_name, pod_selector=inference.selector)
if monitoring_args:
    Monitoring("monitoring", monitoring_args, opts=on_cluster)

pulumi.export("endpoint", inference.endpoint)
pulumi.export("clusterEndpoint", inference.cluster_endpoint)
pulumi.export("apiKey", inference.api_key)
pulumi.export("modelPath", model.model_dir or "bundled in the image")
pulumi.export("namespace", namespace_name)

"""llm-uk8s: read the stack's config, compose the components into one graph, export outputs.

UFS -> mount point -> PV -> claim -> fetch Job -> Deployment -> Service, and
cluster -> GPU nodes -> Kubernetes provider -> GPU DaemonSets (device plugin) -> Deployment.
"""

import pulumi
import pulumi_kubernetes as k8s

from components.errors import ConfigError
from components.k8s.gpu_drivers import GpuDrivers, GpuDriversArgs
from components.k8s.inference import InferenceService, InferenceServiceArgs, ucloud_lb_annotations
from components.k8s.model_fetch import ModelFetch, ModelFetchArgs
from components.stack import config as stack_config
from components.ucloud.cluster import GpuCluster, GpuClusterArgs, GpuNodePoolArgs, local_provider
from components.ucloud.model_volume import ModelVolume, ModelVolumeArgs
from components.ucloud.preflight.in_pulumi import OFFLINE_ESTIMATE, run_if_credentials
from components.ucloud.preflight.run import PreflightError

LOCAL_MODEL_HOST_PATH = "/var/lib/llm-uk8s/models"

try:
    cfg = stack_config.load()
    # With UCloud keys: the live read-only checks of `make preflight`, before anything is
    # registered; every problem at once. Never under the mock runtime (`make plan`, the tests).
    estimate = run_if_credentials(cfg) if cfg.preflight else None
except (ConfigError, PreflightError) as error:
    raise pulumi.RunError(str(error)) from None  # the message alone, no traceback

nfs_server: pulumi.Input[str] | None = None
node_address: pulumi.Input[str] | None = None
if cfg.uses_ucloud:
    cluster = GpuCluster(
        "gpu",
        GpuClusterArgs(
            region=cfg.region,
            project_id=cfg.project_id,
            zones=cfg.zones,
            vpc_cidr=cfg.vpc_cidr,
            subnet_cidr=cfg.subnet_cidr,
            service_cidr=cfg.service_cidr,
            cluster_name=cfg.resolved_cluster_name,
            kubernetes_version=cfg.kubernetes_version,
            master_machine_type=cfg.master_machine_type,
            master_cpu=cfg.master_cpu,
            master_memory_mb=cfg.master_memory_mb,
            external_api_server=cfg.external_api_server,
            charge_type=cfg.charge_type,
            nat_bandwidth_mbps=cfg.nat_bandwidth_mbps,
            nat_internet_type=cfg.nat_internet_type,
            gpu_nodes=GpuNodePoolArgs(
                machine_type=cfg.gpu_machine_type,
                gpu_type=cfg.gpu_type,
                gpus=cfg.gpus_per_node,
                cpu=cfg.gpu_node_cpu,
                memory_mb=cfg.gpu_node_memory_mb,
                count=cfg.gpu_node_count,
                image_id=cfg.gpu_node_image_id,
                labels=cfg.node_labels,
                taints=cfg.gpu_node_taints,
            ),
        ),
    )
    storage = ModelVolume(
        "models",
        ModelVolumeArgs(
            region=cfg.region,
            project_id=cfg.project_id,
            size_gb=cfg.ufs_size_gb,
            storage_type=cfg.ufs_storage_type,
            charge_type=cfg.charge_type,
            vpc_id=cluster.vpc_id,
            subnet_id=cluster.subnet_id,
            retain=cfg.retain_model_data,
        ),
    )
    provider = cluster.provider
    nfs_server = storage.mount_point_ip
    node_address = cluster.node_ips.apply(lambda ips: ips[0] if ips else "")
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("clusterId", cluster.cluster_id)
    pulumi.export("natPublicIp", cluster.nat_public_ip)
    pulumi.export("ufsVolumeId", storage.volume_id)
    pulumi.export("ufsMountIp", storage.mount_point_ip)
    pulumi.export("estimatedCost", estimate if estimate is not None else OFFLINE_ESTIMATE)
else:
    provider = local_provider(cfg.kube_context)

on_cluster = pulumi.ResourceOptions(provider=provider)
namespace = k8s.core.v1.Namespace(
    "namespace",
    metadata={"name": cfg.namespace, "labels": {"app.kubernetes.io/part-of": "llm-uk8s"}},
    opts=on_cluster,
)

drivers = GpuDrivers(
    "gpu-drivers",
    GpuDriversArgs(
        mode=cfg.gpu_driver_mode,
        gpu_node_selector=cfg.node_labels,
        gpu_taint_keys=cfg.gpu_taint_keys,
    ),
    opts=on_cluster,
)

store = ModelFetch(
    "model-store",
    ModelFetchArgs(
        namespace=namespace.metadata["name"],
        model_name=cfg.model_name,
        source=cfg.model_source,
        nfs_server=nfs_server,
        host_path=None if cfg.uses_ucloud else LOCAL_MODEL_HOST_PATH,
        repo_id=cfg.model_repo_id if cfg.model_source == "huggingface" else None,
        revision=cfg.model_revision if cfg.model_source == "huggingface" else None,
        hub_endpoint=cfg.hub_endpoint or None,
        hub_token=stack_config.hub_token(),
        fetch_image=cfg.inference_image,
        job_timeout_s=cfg.model_fetch_timeout_seconds,
    ),
    opts=on_cluster,
)

inference = InferenceService(
    "inference",
    InferenceServiceArgs(
        namespace=namespace.metadata["name"],
        image=cfg.inference_image,
        model_claim_name=store.claim_name,
        served_model_name=cfg.model_name,
        model_dir=store.model_dir,
        model_revision=store.revision,
        replicas=cfg.replicas,
        gpus_per_replica=cfg.gpus_per_replica,
        cpu_request=cfg.inference_cpu,
        cpu_limit=cfg.inference_cpu,
        memory_request=cfg.inference_memory,
        memory_limit=cfg.inference_memory,
        gpu_node_selector=cfg.node_labels if cfg.gpus_per_replica else {},
        gpu_taint_keys=cfg.gpu_taint_keys,
        runtime_class_name=drivers.runtime_class_name if cfg.gpus_per_replica else None,
        service_type=cfg.service_type,
        node_port=cfg.node_port,
        load_balancer_annotations=(
            ucloud_lb_annotations(cfg.load_balancer_type) if cfg.uses_ucloud else {}
        ),
        node_address=node_address,
        network_policy=cfg.network_policy,
        allowed_cidrs=cfg.allowed_cidrs,
        max_batch=cfg.max_batch,
        max_model_len=cfg.max_model_len,
        wait_for=[*store.dependencies, *drivers.gpu_ready],
    ),
    opts=on_cluster,
)

pulumi.export("endpoint", inference.endpoint)
pulumi.export("clusterEndpoint", inference.cluster_endpoint)
pulumi.export("apiKey", inference.api_key)
pulumi.export("modelPath", store.model_dir or "bundled in the image")
pulumi.export("namespace", namespace.metadata["name"])

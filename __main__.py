"""llm-uk8s: read the stack's config, compose the components into one graph, export outputs."""

import pulumi

from components import config as stack_config
from components.cluster import GpuCluster, GpuClusterArgs, GpuNodePoolArgs, local_provider
from components.storage import ModelStorage, ModelStorageArgs

cfg = stack_config.load()

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
    storage = ModelStorage(
        "models",
        ModelStorageArgs(
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
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("clusterId", cluster.cluster_id)
    pulumi.export("ufsVolumeId", storage.volume_id)
    pulumi.export("ufsMountIp", storage.mount_point_ip)
else:
    provider = local_provider(cfg.kube_context)

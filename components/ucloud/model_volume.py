"""`ModelVolume`: the UFS volume that holds model weights and its mount point in the cluster's VPC.

Why a component of its own: the volume outlives clusters. It is protected by default, so
`pulumi destroy --exclude-protected` tears the cluster down and keeps the (slow to download)
weights; set `retainModelData: false` to let a plain destroy delete it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.ucloud import UfsMountPoint, UfsMountPointArgs, UfsVolume, UfsVolumeArgs

# The class was called ModelStorage; the type token keeps that name on purpose. It is part of the
# URNs of the volume and its mount point, and a changed URN makes `pulumi up` replace the volume
# that holds the weights (tests/stack/urns/ pins it).
TYPE_TOKEN = "llm-uk8s:storage:ModelStorage"


@dataclass
class ModelVolumeArgs:
    """Named after the UfsVolume inputs they become (`size` in GB); the mount point joins
    `vpc_id`/`subnet_id`; `retain` protects the volume."""

    region: str
    project_id: str
    size: int
    storage_type: str
    charge_type: str
    vpc_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    retain: bool = True


class ModelVolume(pulumi.ComponentResource):
    """UFS volume + mount point; exports the NFS server address the PersistentVolume uses."""

    volume_id: pulumi.Output[str]
    mount_point_ip: pulumi.Output[str]

    def __init__(
        self, name: str, args: ModelVolumeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        volume = UfsVolume(
            f"{name}-ufs",
            UfsVolumeArgs(
                region=args.region,
                project_id=args.project_id,
                name=f"{name}-models",
                size=args.size,
                storage_type=args.storage_type,
                protocol_type="NFSv4",
                charge_type=args.charge_type,
                tag="llm-uk8s",
                remark="model weights (llm-uk8s)",
            ),
            # Protected: `pulumi destroy --exclude-protected` keeps the weights.
            opts=pulumi.ResourceOptions(parent=self, protect=args.retain),
        )
        mount_point = UfsMountPoint(
            f"{name}-mount",
            UfsMountPointArgs(
                region=args.region,
                project_id=args.project_id,
                volume_id=volume.id,
                name=f"{name}-mount",
                vpc_id=args.vpc_id,
                subnet_id=args.subnet_id,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.volume_id = volume.id
        self.mount_point_ip = mount_point.mount_point_ip
        self.register_outputs({"volume_id": self.volume_id, "mount_point_ip": self.mount_point_ip})

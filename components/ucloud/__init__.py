"""UCloud resources (VPC, subnet, EIP, NAT gateway, UFS, UK8S) as Pulumi dynamic providers
over ucloud-sdk-python3."""

from components.ucloud.base import Timings
from components.ucloud.eip import Eip, EipArgs, EipProvider
from components.ucloud.nat_gateway import NatGateway, NatGatewayArgs, NatGatewayProvider
from components.ucloud.subnet import Subnet, SubnetArgs, SubnetProvider
from components.ucloud.ufs_mount_point import (
    UfsMountPoint,
    UfsMountPointArgs,
    UfsMountPointProvider,
)
from components.ucloud.ufs_volume import UfsVolume, UfsVolumeArgs, UfsVolumeProvider
from components.ucloud.uk8s_cluster import Uk8sCluster, Uk8sClusterArgs, Uk8sClusterProvider
from components.ucloud.uk8s_node import Uk8sNode, Uk8sNodeArgs, Uk8sNodeProvider
from components.ucloud.vpc import Vpc, VpcArgs, VpcProvider

__all__ = [
    "Eip",
    "EipArgs",
    "EipProvider",
    "NatGateway",
    "NatGatewayArgs",
    "NatGatewayProvider",
    "Subnet",
    "SubnetArgs",
    "SubnetProvider",
    "Timings",
    "UfsMountPoint",
    "UfsMountPointArgs",
    "UfsMountPointProvider",
    "UfsVolume",
    "UfsVolumeArgs",
    "UfsVolumeProvider",
    "Uk8sCluster",
    "Uk8sClusterArgs",
    "Uk8sClusterProvider",
    "Uk8sNode",
    "Uk8sNodeArgs",
    "Uk8sNodeProvider",
    "Vpc",
    "VpcArgs",
    "VpcProvider",
]

"""`GpuCluster`: VPC, subnet, NAT gateway, UK8S cluster and GPU nodes, plus the Kubernetes provider.

Why one component: everything after it (GPU DaemonSets, model store, inference) must talk to this
cluster and only this one. The provider is built from the cluster's kubeconfig output (a secret) and
waits for the GPU nodes, so nothing is applied to a cluster that cannot yet run it.

Why a NAT gateway: the nodes have no public IPs, and UCloud only lets hosts without one reach the
internet through a NAT gateway on their subnet. Without it nothing but UHub images pull (the
NVIDIA device plugin and DCGM come from nvcr.io) and the model fetch cannot reach its hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import cycle, islice

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.ucloud import (
    Eip,
    EipArgs,
    NatGateway,
    NatGatewayArgs,
    Subnet,
    SubnetArgs,
    Uk8sCluster,
    Uk8sClusterArgs,
    Uk8sNode,
    Uk8sNodeArgs,
    Vpc,
    VpcArgs,
    vocabulary,
)

# Part of every child's URN: a new token makes `pulumi up` replace the cluster (tests/stack/urns/).
TYPE_TOKEN = "llm-uk8s:cluster:GpuCluster"
MASTER_COUNT = 3  # UK8S always runs three masters


@dataclass
class GpuNodePoolArgs:
    """The GPU node pool. Each field is named after the Uk8sNode input it becomes (memory in MB),
    so nothing is renamed on the way; `count` is the pool's total, placed over the zones by
    `nodes_per_zone` (each zone's group gets its share as its own `count`)."""

    machine_type: str
    gpu_type: str
    gpu: int
    cpu: int
    mem: int
    count: int
    image_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[str] = field(default_factory=list)


@dataclass
class GpuClusterArgs:
    """The network, the cluster and its GPU nodes. Fields are named after the input they become:
    `master_*` and `k8s_version` of Uk8sCluster, `nat_*` of the NAT's Eip (bandwidth in Mbps).
    `cluster_name` names the cluster and prefixes its VPC, subnet and NAT."""

    region: str
    project_id: str
    zones: list[str]
    vpc_cidr: str
    subnet_cidr: str
    service_cidr: str
    cluster_name: str
    k8s_version: str
    master_machine_type: str
    master_cpu: int
    master_mem: int
    external_api_server: bool
    charge_type: str
    gpu_nodes: GpuNodePoolArgs
    # Outbound bandwidth shared by every node (image pulls, model download), and the EIP's line:
    # "BGP" in mainland regions, "International" elsewhere.
    nat_bandwidth: int = 20
    nat_internet_type: str = "BGP"


def master_zones(zones: list[str]) -> list[str]:
    """Three masters spread over the given zones in turn (one zone means all three there)."""
    return list(islice(cycle(zones), MASTER_COUNT))


def nodes_per_zone(zones: list[str], count: int) -> dict[str, int]:
    """GPU nodes placed round-robin over the zones; zones that get none are left out."""
    placed = {zone: 0 for zone in zones}
    for zone in islice(cycle(zones), count):
        placed[zone] += 1
    return {zone: n for zone, n in placed.items() if n}


class GpuCluster(pulumi.ComponentResource):
    """A UK8S cluster with GPU nodes in its own VPC; `provider` deploys onto it."""

    vpc_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    nat_gateway_id: pulumi.Output[str]
    nat_public_ip: pulumi.Output[str]
    cluster_id: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    node_ids: pulumi.Output[list[str]]
    node_ips: pulumi.Output[list[str]]
    provider: k8s.Provider

    def __init__(
        self, name: str, args: GpuClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        common = {"region": args.region, "project_id": args.project_id}

        vpc = Vpc(
            f"{name}-vpc",
            VpcArgs(
                **common,
                name=f"{args.cluster_name}-vpc",
                cidr_blocks=[args.vpc_cidr],
                tag="llm-uk8s",
            ),
            opts=child,
        )
        subnet = Subnet(
            f"{name}-subnet",
            SubnetArgs(
                **common,
                vpc_id=vpc.id,
                cidr_block=args.subnet_cidr,
                name=f"{args.cluster_name}-subnet",
                tag="llm-uk8s",
            ),
            opts=child,
        )
        nat_ip = Eip(
            f"{name}-nat-eip",
            EipArgs(
                **common,
                name=f"{args.cluster_name}-nat",
                bandwidth=args.nat_bandwidth,
                internet_type=args.nat_internet_type,
                charge_type=args.charge_type,
                tag="llm-uk8s",
            ),
            opts=child,
        )
        # Binding the subnet is what gives every node in it outbound access (SNAT).
        nat = NatGateway(
            f"{name}-nat",
            NatGatewayArgs(
                **common,
                name=f"{args.cluster_name}-nat",
                vpc_id=vpc.id,
                subnet_ids=[subnet.id],
                eip_ids=[nat_ip.id],
                tag="llm-uk8s",
            ),
            opts=child,
        )
        # Nodes pull images and install packages while they join: the way out must exist first.
        needs_internet = pulumi.ResourceOptions(parent=self, depends_on=[nat])
        # UK8S needs a root password for every host; nobody should have to choose one.
        password = random.RandomPassword(
            f"{name}-host-password",
            length=24,
            special=True,
            override_special="!@#%^*-_=+",
            min_upper=2,
            min_lower=2,
            min_numeric=2,
            min_special=2,
            opts=child,
        )
        cluster = Uk8sCluster(
            f"{name}-uk8s",
            Uk8sClusterArgs(
                **common,
                name=args.cluster_name,
                vpc_id=vpc.id,
                subnet_id=subnet.id,
                password=password.result,
                service_cidr=args.service_cidr,
                k8s_version=args.k8s_version,
                master_machine_type=args.master_machine_type,
                master_cpu=args.master_cpu,
                master_mem=args.master_mem,
                master_zones=master_zones(args.zones),
                charge_type=args.charge_type,
                external_api_server=args.external_api_server,
            ),
            opts=needs_internet,
        )
        pool = args.gpu_nodes
        node_groups = [
            Uk8sNode(
                f"{name}-gpu-{zone}",
                Uk8sNodeArgs(
                    **common,
                    cluster_id=cluster.id,
                    name=f"gpu-{zone}",
                    subnet_id=subnet.id,
                    zone=zone,
                    machine_type=pool.machine_type,
                    boot_disk_type=vocabulary.boot_disk_type_for(pool.machine_type),
                    gpu_type=pool.gpu_type,
                    gpu=pool.gpu,
                    cpu=pool.cpu,
                    mem=pool.mem,
                    count=count,
                    charge_type=args.charge_type,
                    password=password.result,
                    image_id=pool.image_id or None,
                    labels=pool.labels,
                    taints=pool.taints,
                ),
                opts=needs_internet,
            )
            for zone, count in nodes_per_zone(args.zones, pool.count).items()
        ]
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=cluster.kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=node_groups),
        )
        self.vpc_id = vpc.id
        self.subnet_id = subnet.id
        self.nat_gateway_id = nat.id
        self.nat_public_ip = nat_ip.public_ip
        self.cluster_id = cluster.id
        self.kubeconfig = pulumi.Output.secret(cluster.kubeconfig)
        self.node_ids = pulumi.Output.all(*[g.node_ids for g in node_groups]).apply(
            lambda groups: [node for group in groups for node in group]
        )
        self.node_ips = pulumi.Output.all(*[g.private_ips for g in node_groups]).apply(
            lambda groups: [ip for group in groups for ip in group]
        )
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "subnet_id": self.subnet_id,
                "nat_gateway_id": self.nat_gateway_id,
                "nat_public_ip": self.nat_public_ip,
                "cluster_id": self.cluster_id,
                "kubeconfig": self.kubeconfig,
                "node_ids": self.node_ids,
            }
        )


def local_provider(context: str) -> k8s.Provider:
    """The local platform: the current kubeconfig (or the named context), no UCloud at all."""
    return k8s.Provider("local-k8s", context=context or None, enable_server_side_apply=True)

"""Deterministic stand-ins for what the cloud computes, so an offline plan reads like a real one.

Why derived from the stack's config: a mount point IP inside the stack's own subnet and a node
count that matches the pool make the plan reviewable; the same config always gives the same plan.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from pulumi.runtime.mocks import MockResourceArgs

from tools.mock_runtime import OutputFactory

FAKE_KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- cluster: {{server: 'https://{api}:6443', insecure-skip-tls-verify: true}}
  name: {name}
contexts:
- context: {{cluster: {name}, user: admin}}
  name: {name}
current-context: {name}
users:
- name: admin
  user: {{token: offline-plan-token}}
"""


def factories(config: Mapping[str, str], project: str = "llm-uk8s") -> dict[str, OutputFactory]:
    subnet = ipaddress.ip_network(config.get(f"{project}:subnetCidr", "10.60.0.0/20"))
    hosts = subnet.network_address

    def mount_point(args: MockResourceArgs) -> dict[str, Any]:
        return {"mount_point_ip": str(hosts + 10)}

    def cluster(args: MockResourceArgs) -> dict[str, Any]:
        api = str(hosts + 2)
        name = str(args.inputs.get("name", args.name))
        return {
            "status": "RUNNING",
            "api_server": f"https://{api}:6443",
            "external_api_server_address": "https://203.0.113.10:6443",
            "kubeconfig": FAKE_KUBECONFIG.format(api="203.0.113.10", name=name),
            "internal_kubeconfig": FAKE_KUBECONFIG.format(api=api, name=name),
        }

    def nodes(args: MockResourceArgs) -> dict[str, Any]:
        count = int(args.inputs.get("count", 1))
        return {
            "node_ids": [f"uhost-{args.name}-{i}" for i in range(count)],
            "private_ips": [str(hosts + 100 + i) for i in range(count)],
        }

    def eip(args: MockResourceArgs) -> dict[str, Any]:
        # TEST-NET-3 (RFC 5737): reads as a public address, can never be a real one.
        return {"public_ip": "203.0.113.20"}

    def nat_gateway(args: MockResourceArgs) -> dict[str, Any]:
        return {"effective_firewall_id": "firewall-offline-plan", "create_time": 0}

    def password(args: MockResourceArgs) -> dict[str, Any]:
        return {"result": f"offline-{args.name}", "bcryptHash": "offline"}

    return {
        "*:UfsMountPoint": mount_point,
        "*:Uk8sCluster": cluster,
        "*:Uk8sNode": nodes,
        "*:Eip": eip,
        "*:NatGateway": nat_gateway,
        "random:index/randomPassword:RandomPassword": password,
    }

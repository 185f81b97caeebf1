"""Run in a fresh interpreter by test_pickling: unpickle providers the way Pulumi's
dynamic-provider host does (base64 + dill.loads, then configure) and drive them."""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import dill
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config


def load(serialized: str, config: dict[str, str]) -> Any:
    provider = dill.loads(base64.b64decode(serialized))
    provider.configure(ConfigureRequest(Config(config, project_name="llm-uk8s")))
    return provider


def main() -> None:
    job = json.load(sys.stdin)
    p = {name: load(blob, job["config"]) for name, blob in job["providers"].items()}
    region = {"region": "cn-bj2", "project_id": "org-test"}
    done: list[tuple[str, str, dict[str, Any]]] = []

    def create(name: str, inputs: dict[str, Any]) -> Any:
        result = p[name].create({**region, **inputs})
        done.append((name, result.id, result.outs))
        return result

    vpc = create("vpc", {"name": "v", "cidr_blocks": ["10.0.0.0/16"]})
    subnet = create("subnet", {"name": "s", "vpc_id": vpc.id, "cidr_block": "10.0.1.0/24"})
    eip = create("eip", {"name": "nat-ip", "bandwidth": 5})
    create(
        "nat",
        {"name": "nat", "vpc_id": vpc.id, "subnet_ids": [subnet.id], "eip_ids": [eip.id]},
    )
    volume = create("ufs", {"name": "m", "size": 500})
    network = {"vpc_id": vpc.id, "subnet_id": subnet.id}
    mount = create("mount", {"name": "k8s", "volume_id": volume.id, **network})
    cluster = create(
        "cluster",
        {
            "name": "c",
            **network,
            "password": "Secret-Pass1",
            "k8s_version": "1.30.3",
            "master_zones": ["a", "b", "c"],
        },
    )
    create(
        "node",
        {
            "name": "gpu",
            "cluster_id": cluster.id,
            "subnet_id": subnet.id,
            "zone": "a",
            "gpu_type": "4090",
            "gpu": 1,
            "password": "Secret-Pass1",
        },
    )
    reads = {name: p[name].read(id_, outs).id for name, id_, outs in done}
    for name, id_, outs in reversed(done):
        p[name].delete(id_, outs)
    json.dump(
        {
            "ids": {name: id_ for name, id_, _ in done},
            "reads": reads,
            "mount_ip": mount.outs["mount_point_ip"],
            "public_ip": eip.outs["public_ip"],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()

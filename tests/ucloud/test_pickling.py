"""Providers survive Pulumi's dill serialization and work in a fresh process."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from pulumi.dynamic.dynamic import serialize_provider

from components.ucloud.eip import EipProvider
from components.ucloud.nat_gateway import NatGatewayProvider
from components.ucloud.subnet import SubnetProvider
from components.ucloud.ufs_mount_point import UfsMountPointProvider
from components.ucloud.ufs_volume import UfsVolumeProvider
from components.ucloud.uk8s_cluster import Uk8sClusterProvider
from components.ucloud.uk8s_node import Uk8sNodeProvider
from components.ucloud.vpc import VpcProvider
from tests.fake_ucloud import FakeUCloud
from tests.ucloud.conftest import fast_timings

REPO = Path(__file__).resolve().parents[2]
# dill pickles a provider's class, and the dataclasses it holds, by reference to their modules
# (pulumi/dynamic/dynamic.py serialize_provider: dill.dumps(provider, recurse=True); classes of an
# importable module are stored as module + name). Every stack's state holds these blobs, so
# `pulumi up`/`destroy` of an existing stack imports exactly these module paths: they must not
# move (components/README.md, "Why the providers stay where they are").
PICKLED_MODULES = {
    "components.ucloud.base",
    "components.ucloud.eip",
    "components.ucloud.nat_gateway",
    "components.ucloud.retry",
    "components.ucloud.subnet",
    "components.ucloud.ufs_mount_point",
    "components.ucloud.ufs_volume",
    "components.ucloud.uk8s_cluster",
    "components.ucloud.uk8s_node",
    "components.ucloud.vpc",
    "components.ucloud.waiting",
}
# Real time.sleep, tiny numbers: what is pickled is what a user's program would pickle.
QUICK = fast_timings(sleep=time.sleep, timeout=10.0)
PROVIDERS = {
    "vpc": VpcProvider(QUICK),
    "subnet": SubnetProvider(QUICK),
    "eip": EipProvider(QUICK),
    "nat": NatGatewayProvider(QUICK),
    "ufs": UfsVolumeProvider(QUICK),
    "mount": UfsMountPointProvider(QUICK),
    "cluster": Uk8sClusterProvider(QUICK),
    "node": Uk8sNodeProvider(QUICK),
}


def test_pickled_providers_create_read_delete_in_a_fresh_process(fake: FakeUCloud) -> None:
    job = {
        "providers": {name: serialize_provider(p) for name, p in PROVIDERS.items()},
        "config": {
            "ucloud:publicKey": fake.public_key,
            "ucloud:privateKey": fake.private_key,
            "ucloud:baseUrl": fake.base_url,
        },
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCLOUD_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("pickled_run.py"))],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["ids"]) == set(PROVIDERS)
    assert result["reads"] == result["ids"]
    assert result["mount_ip"].count(".") == 3
    assert result["public_ip"].count(".") == 3
    for kind in ("vpc", "subnet", "eip", "natgw", "ufs", "cluster", "node"):
        assert fake.resources(kind) == {}, kind
    assert fake.count("CreateUK8SClusterV2") == 1 and fake.count("DelUK8SCluster") == 1
    assert fake.count("CreateNATGW") == 1 and fake.count("ReleaseEIP") == 1


def test_serialized_provider_carries_no_keys(ucloud_env: FakeUCloud) -> None:
    provider = VpcProvider(QUICK)
    provider.create({"region": "cn-bj2", "name": "v", "cidr_blocks": ["10.0.0.0/16"]})
    blob = serialize_provider(provider)

    raw = base64.b64decode(blob)
    assert ucloud_env.private_key.encode() not in raw
    assert ucloud_env.public_key.encode() not in raw


def test_state_names_only_the_pinned_provider_modules() -> None:
    named: set[str] = set()
    for provider in PROVIDERS.values():
        blob = base64.b64decode(serialize_provider(provider))
        named |= {m.decode() for m in re.findall(rb"components(?:\.[A-Za-z_]\w*)+", blob)}
    assert named == PICKLED_MODULES

"""Fixtures for the UCloud provider tests: a running fake API, keys in the env, fast timings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from components.ucloud.base import Timings
from components.ucloud.retry import RetryPolicy
from components.ucloud.subnet import SubnetProvider
from components.ucloud.vpc import VpcProvider
from components.ucloud.waiting import WaitPolicy
from tests.fake_ucloud import FakeUCloud

REGION = "cn-bj2"
PROJECT = "org-test"


class SleepLog:
    """Records requested sleeps and sleeps a tiny bit, so tests stay fast."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class FakeClock:
    """A clock that moves only when slept on: bounds are tested without wall-clock time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.delays: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds


def fast_timings(sleep: Any = None, timeout: float = 5.0, release: Any = None) -> Timings:
    nap = sleep or (lambda _seconds: None)
    return Timings(
        retry=RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.08, sleep=nap),
        ready=WaitPolicy(timeout=timeout, first_delay=0.01, interval=0.001, sleep=nap),
        gone=WaitPolicy(timeout=timeout, first_delay=0.0, interval=0.001, sleep=nap),
        release=release or WaitPolicy(timeout=timeout, interval=0.001, sleep=nap),
    )


@pytest.fixture
def fake() -> Iterator[FakeUCloud]:
    with FakeUCloud() as server:
        yield server


@pytest.fixture
def ucloud_env(fake: FakeUCloud, monkeypatch: pytest.MonkeyPatch) -> FakeUCloud:
    monkeypatch.setenv("UCLOUD_PUBLIC_KEY", fake.public_key)
    monkeypatch.setenv("UCLOUD_PRIVATE_KEY", fake.private_key)
    monkeypatch.setenv("UCLOUD_BASE_URL", fake.base_url)
    monkeypatch.delenv("UCLOUD_PROJECT_ID", raising=False)
    return fake


@pytest.fixture
def timings() -> Timings:
    return fast_timings()


def vpc_inputs(**overrides: Any) -> dict[str, Any]:
    return {
        "region": REGION,
        "project_id": PROJECT,
        "name": "llm-vpc",
        "cidr_blocks": ["10.0.0.0/16"],
        **overrides,
    }


def subnet_inputs(vpc_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "region": REGION,
        "project_id": PROJECT,
        "vpc_id": vpc_id,
        "cidr_block": "10.0.1.0/24",
        "name": "llm-subnet",
        **overrides,
    }


@pytest.fixture
def network(ucloud_env: FakeUCloud, timings: Timings) -> dict[str, str]:
    """A VPC and a subnet made through the providers, for resources that live in them."""
    vpc = VpcProvider(timings).create(vpc_inputs())
    subnet = SubnetProvider(timings).create(subnet_inputs(vpc.id))
    return {"vpc_id": vpc.id, "subnet_id": subnet.id}


def volume_inputs(**overrides: Any) -> dict[str, Any]:
    return {"region": REGION, "project_id": PROJECT, "name": "models", "size": 500, **overrides}


def mount_inputs(volume_id: str, network: dict[str, str], **overrides: Any) -> dict[str, Any]:
    return {
        "region": REGION,
        "project_id": PROJECT,
        "volume_id": volume_id,
        "name": "k8s",
        **network,
        **overrides,
    }


def cluster_inputs(network: dict[str, str], **overrides: Any) -> dict[str, Any]:
    return {
        "region": REGION,
        "project_id": PROJECT,
        "name": "llm",
        **network,
        "password": "Secret-Pass1",
        "k8s_version": "1.30.3",
        "master_zones": ["cn-bj2-02", "cn-bj2-03", "cn-bj2-05"],
        **overrides,
    }


def node_inputs(cluster_id: str, subnet_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "region": REGION,
        "project_id": PROJECT,
        "cluster_id": cluster_id,
        "name": "gpu",
        "subnet_id": subnet_id,
        "zone": "cn-bj2-05",
        "machine_type": "G",
        "gpu_type": "4090",
        "gpu": 1,
        "cpu": 16,
        "mem": 65536,
        "count": 2,
        "password": "Secret-Pass1",
        "labels": {"accelerator": "nvidia"},
        "taints": ["nvidia.com/gpu=true:NoSchedule"],
        **overrides,
    }


def eip_inputs(**overrides: Any) -> dict[str, Any]:
    return {
        "region": REGION,
        "project_id": PROJECT,
        "name": "llm-nat-eip",
        "bandwidth": 20,
        "internet_type": "BGP",
        **overrides,
    }


def nat_inputs(network: dict[str, str], eip_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "region": REGION,
        "project_id": PROJECT,
        "name": "llm-nat",
        "vpc_id": network["vpc_id"],
        "subnet_ids": [network["subnet_id"]],
        "eip_ids": [eip_id],
        **overrides,
    }

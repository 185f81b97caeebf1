"""Builders for the Kubernetes components under the mock runtime, with realistic args per stack.

Import as `tests.k8s.stacks` (pytest's pythonpath has the repo root)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.k8s.gpu_drivers import GpuDrivers, GpuDriversArgs
from components.k8s.inference import InferenceService, InferenceServiceArgs
from components.k8s.model_fetch import ModelFetch, ModelFetchArgs
from tools.mock_runtime import Plan, RecordedResource, run_program

GPU_SELECTOR = {"llm-uk8s/gpu": "true"}
IMAGE = "uhub.service.ucloud.cn/llm-uk8s/llmserve:0.1.0"
REVISION = "0123456789abcdef0123456789abcdef01234567"
HUB_TOKEN = "hf_test_token_must_stay_secret"
# Not an IP a UFS would hand out, so a test can tell it from any default.
UFS_IP = "10.23.45.67"
UFS_MOUNT_POINT = UFS_IP + ":/"
MOCK_API_KEY = "mock-generated-api-key-0123456789"


@dataclass
class StackArgs:
    """One environment's component args (what __main__.py would build from config)."""

    store: ModelFetchArgs
    gpu: GpuDriversArgs
    inference: InferenceServiceArgs
    provider_style: str = "providers"  # or "provider"


def ufs_store(**overrides: Any) -> ModelFetchArgs:
    base = ModelFetchArgs(
        namespace="llm",
        model_name="chatglm2-6b",
        nfs_server=UFS_MOUNT_POINT,
        repo_id="THUDM/chatglm2-6b",
        revision=REVISION,
        hub_token=pulumi.Output.secret(HUB_TOKEN),
        fetch_image=IMAGE,
    )
    return replace(base, **overrides)


def local_store(**overrides: Any) -> ModelFetchArgs:
    base = ModelFetchArgs(
        namespace="llm",
        model_name="bundled",
        source="bundled",
        host_path="/var/lib/llm-uk8s/models",
    )
    return replace(base, **overrides)


def gpu_inference(**overrides: Any) -> InferenceServiceArgs:
    base = InferenceServiceArgs(
        namespace="llm",
        image=IMAGE,
        model_claim_name="placeholder",
        served_model_name="chatglm2-6b",
        gpus_per_replica=1,
        gpu_node_selector=GPU_SELECTOR,
    )
    return replace(base, **overrides)


def cpu_inference(**overrides: Any) -> InferenceServiceArgs:
    base = InferenceServiceArgs(
        namespace="llm",
        image=IMAGE,
        model_claim_name="placeholder",
        served_model_name="smollm2-135m",
        gpus_per_replica=0,
        cpu_request="1",
        cpu_limit="2",
        memory_request="1Gi",
        memory_limit="2Gi",
        shm_size="256Mi",
    )
    return replace(base, **overrides)


def dev_args() -> StackArgs:
    return StackArgs(
        store=ufs_store(),
        gpu=GpuDriversArgs(mode="preinstalled", gpu_node_selector=GPU_SELECTOR),
        inference=gpu_inference(service_type="NodePort"),
    )


def prod_args() -> StackArgs:
    return StackArgs(
        store=ufs_store(hub_endpoint="https://hf-mirror.com"),
        gpu=GpuDriversArgs(mode="daemonset", gpu_node_selector=GPU_SELECTOR),
        inference=gpu_inference(
            replicas=2,
            service_type="LoadBalancer",
            network_policy=True,
            allowed_cidrs=["203.0.113.0/24"],
            load_balancer_annotations={
                "service.beta.kubernetes.io/ucloud-load-balancer-type": "outer"
            },
        ),
        provider_style="provider",
    )


def local_args() -> StackArgs:
    return StackArgs(
        store=local_store(),
        gpu=GpuDriversArgs(mode="none"),
        inference=cpu_inference(),
    )


STACKS: dict[str, Callable[[], StackArgs]] = {
    "dev": dev_args,
    "prod": prod_args,
    "local": local_args,
}


def build(make: Callable[[], StackArgs]) -> Callable[[], None]:
    """A program wiring the three components the way __main__.py does: what flows from one
    component to the next (claim, weights' directory, revision, runtime class, what to wait
    for) comes from the components' outputs, never from the args again.

    The args are made inside the program: Outputs belong to the event loop of the run."""

    def program() -> None:
        stack = make()
        provider = k8s.Provider("cluster", kubeconfig=pulumi.Output.secret("{}"))
        if stack.provider_style == "provider":
            opts = pulumi.ResourceOptions(provider=provider)
        else:
            opts = pulumi.ResourceOptions(providers={"kubernetes": provider})
        store = ModelFetch("model", stack.store, opts=opts)
        gpu = GpuDrivers("gpu", stack.gpu, opts=opts)
        inference_args = replace(
            stack.inference,
            model_claim_name=store.claim_name,
            model_dir=store.model_dir,
            model_revision=store.revision,
            runtime_class_name=gpu.runtime_class_name if stack.inference.uses_gpu else None,
            wait_for=[*store.dependencies, *gpu.gpu_ready],
        )
        service = InferenceService("llm", inference_args, opts=opts)
        pulumi.export("endpoint", service.endpoint)
        pulumi.export("api_key", service.api_key)
        pulumi.export("model_dir", store.model_dir)

    return program


def run_stack(name: str, make: Callable[[], StackArgs] | None = None) -> Plan:
    return run_program(
        build(make or STACKS[name]),
        stack=name,
        outputs={"random:index/randomPassword:RandomPassword": lambda _: {"result": MOCK_API_KEY}},
    )


@functools.cache
def run_default(name: str) -> Plan:
    """run_stack(name) with the stack's own args, run once per session: most tests only read
    the plan, and each run costs a whole mock deployment. Tests must not mutate what it returns.
    """
    return run_stack(name)


def service_named(plan: Plan, name: str) -> RecordedResource:
    """The Service called `name`: the GPU drivers add Services of their own."""
    return next(r for r in plan.by_type("kubernetes:core/v1:Service") if r.name == name)


def create_timeout_s(resource: RecordedResource) -> int:
    """How long Pulumi waits for `resource` to become ready ("600s" -> 600)."""
    return int(resource.custom_timeouts["create"].rstrip("s"))

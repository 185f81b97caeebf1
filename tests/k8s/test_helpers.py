"""The pure helpers behind the components."""

from __future__ import annotations

from dataclasses import replace

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.errors import ConfigError
from components.k8s import conventions
from components.k8s.inference import (
    UCLOUD_LB_TYPE_ANNOTATION,
    endpoint_url,
    progress_deadline_s,
    rollout_strategy,
    termination_grace_s,
    ucloud_lb_annotations,
)
from components.k8s.model_fetch import ModelFetchArgs, fetch_command, prepare_dir_command


@pytest.mark.parametrize(
    ("raw", "server"),
    [
        ("10.9.8.7:/", "10.9.8.7"),
        ("10.9.8.7", "10.9.8.7"),
        (" 10.9.8.7:/ ", "10.9.8.7"),
        ("ufs.example.internal:/", "ufs.example.internal"),
        ("fd00::5", "fd00::5"),
    ],
)
def test_strip_nfs_export(raw: str, server: str) -> None:
    assert conventions.strip_nfs_export(raw) == server


@pytest.mark.parametrize("raw", ["", ":/", "10.0.0.1:/export", "bad host:/", "a/b"])
def test_strip_nfs_export_rejects(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^nfs_server: invalid value"):
        conventions.strip_nfs_export(raw)


@pytest.mark.parametrize(
    "image",
    [
        "nvcr.io/nvidia/k8s-device-plugin:v0.20.1",
        "localhost:5000/llmserve:0.1.0",
        "reg/llmserve@sha256:" + "a" * 64,
    ],
)
def test_pinned_images_pass(image: str) -> None:
    assert conventions.require_pinned_image("image", image) == image


@pytest.mark.parametrize(
    "image",
    [
        "reg/llmserve",
        "reg/llmserve:latest",
        "localhost:5000/llmserve",
        "reg/x@sha256:12",
        "",
        "reg/llm serve:1",
    ],
)
def test_unpinned_images_fail_naming_the_field(image: str) -> None:
    with pytest.raises(ConfigError, match=r"^fetch_image: invalid value .*allowed: "):
        conventions.require_pinned_image("fetch_image", image)


@pytest.mark.parametrize("value", ["500m", "4", "16Gi", "0.5", "1e3x", "16 Gi", "16GB", ""])
def test_quantities(value: str) -> None:
    ok = value in ("500m", "4", "16Gi", "0.5")
    if ok:
        assert conventions.require_quantity("cpu_limit", value) == value
    else:
        with pytest.raises(ConfigError, match=r"^cpu_limit: "):
            conventions.require_quantity("cpu_limit", value)


def test_choice_error_lists_allowed_values() -> None:
    with pytest.raises(ConfigError) as info:
        conventions.require_choice("mode", "operator", ("preinstalled", "daemonset", "none"))
    assert str(info.value) == (
        "mode: invalid value 'operator'; allowed: preinstalled | daemonset | none"
    )


def test_positive_int_bounds_and_bools() -> None:
    assert conventions.require_positive_int("replicas", 3, maximum=4) == 3
    for bad in (0, 5, True, 2.0):
        with pytest.raises(ConfigError, match=r"^replicas: "):
            conventions.require_positive_int("replicas", bad, maximum=4)  # type: ignore[arg-type]


def test_cidrs_are_normalised_and_checked() -> None:
    assert conventions.require_cidrs("allowed_cidrs", ["10.1.2.3/8"]) == ["10.0.0.0/8"]
    with pytest.raises(ConfigError, match=r"^allowed_cidrs: invalid value '10\.0\.0\.0/33'"):
        conventions.require_cidrs("allowed_cidrs", ["10.0.0.0/33"])


def test_wait_timeouts_add_the_margin() -> None:
    timeouts = conventions.wait_timeouts(1800, margin_s=600)
    assert (timeouts.create, timeouts.update) == ("2400s", "2400s")


def test_gpu_rollout_never_surges_cpu_rollout_never_drops() -> None:
    assert rollout_strategy(True)["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert rollout_strategy(False)["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_grace_period_covers_the_drain() -> None:
    assert termination_grace_s(30) > 30
    assert termination_grace_s(300) > 300
    assert progress_deadline_s(1800) > 1800


def test_endpoint_url_choices() -> None:
    cluster = "http://llm.ns.svc.cluster.local:7861/v1"
    assert endpoint_url("ClusterIP", cluster, None, 30619, None) == cluster
    assert endpoint_url("NodePort", cluster, "1.2.3.4", 30619, None) == "http://1.2.3.4:30619/v1"
    assert endpoint_url("NodePort", cluster, None, 30619, None) == cluster
    assert endpoint_url("LoadBalancer", cluster, None, 30619, [{"ip": "5.6.7.8"}]) == (
        "http://5.6.7.8:7861/v1"
    )
    assert endpoint_url("LoadBalancer", cluster, None, 30619, []) == cluster


def store_args(**overrides: object) -> ModelFetchArgs:
    base = ModelFetchArgs(
        namespace="n",
        model_name="m",
        nfs_server="1.2.3.4",
        repo_id="o/m",
        revision="main",
        allow_unpinned=True,
        fetch_image="r/i:1",
    )
    return replace(base, **overrides)


def test_fetch_command_options() -> None:
    assert fetch_command(store_args()) == [
        "llmserve",
        "fetch",
        "--repo-id",
        "o/m",
        "--revision",
        "main",
        "--dest",
        "/models/m/main",
        "--allow-unpinned",
    ]


def test_a_release_tag_is_pinned_without_allow_unpinned() -> None:
    """The config accepts v1.0-style tags as pinned; the store must agree (one rule), and the
    image's fetch takes anything but a commit only with --allow-unpinned."""
    tag = store_args(revision="v1.0", allow_unpinned=False)
    tag.validate()
    assert "--allow-unpinned" in fetch_command(tag)
    commit = store_args(revision="a" * 40, allow_unpinned=False)
    assert "--allow-unpinned" not in fetch_command(commit)
    with pytest.raises(ConfigError, match=r"^revision: invalid value 'main'"):
        store_args(revision="main", allow_unpinned=False).validate()


@pytest.mark.parametrize("revision", ["refs/pr/1", "..", "a b"])
def test_a_revision_that_is_no_directory_name_is_refused(revision: str) -> None:
    with pytest.raises(ConfigError, match=r"^revision: invalid value"):
        store_args(revision=revision).validate()


def test_prepare_dir_only_touches_the_revision_dir() -> None:
    command = prepare_dir_command("chatglm2-6b/v1.0")
    assert command[:2] == ["sh", "-c"]
    assert "'/models/chatglm2-6b/v1.0'" in command[2] and "10001:10001" in command[2]


def test_gpu_tolerations_cover_every_key_once() -> None:
    assert conventions.gpu_tolerations(["nvidia.com/gpu", "ucloud.cn/gpu", "nvidia.com/gpu"]) == [
        {"key": "nvidia.com/gpu", "operator": "Exists"},
        {"key": "ucloud.cn/gpu", "operator": "Exists"},
    ]
    with pytest.raises(ConfigError, match=r"^gpu_taint_keys: invalid value"):
        conventions.require_taint_keys("gpu_taint_keys", "nvidia.com/gpu")  # a string, not a list


def test_ucloud_lb_annotation_follows_the_type() -> None:
    assert ucloud_lb_annotations("inner") == {UCLOUD_LB_TYPE_ANNOTATION: "inner"}
    assert ucloud_lb_annotations("outer") == {UCLOUD_LB_TYPE_ANNOTATION: "outer"}
    with pytest.raises(ConfigError, match=r"^load_balancer_type: invalid value 'public'"):
        ucloud_lb_annotations("public")


def test_kubernetes_provider_is_required() -> None:
    with pytest.raises(ConfigError, match=r"^opts: no Kubernetes provider"):
        conventions.kubernetes_provider(None)
    with pytest.raises(ConfigError):
        conventions.kubernetes_provider(pulumi.ResourceOptions())


def test_kubernetes_provider_found_in_either_option() -> None:
    from tools.mock_runtime import run_program

    found: list[bool] = []

    def program() -> None:
        p = k8s.Provider("p", kubeconfig="{}")
        found.append(conventions.kubernetes_provider(pulumi.ResourceOptions(provider=p)) is p)
        found.append(
            conventions.kubernetes_provider(pulumi.ResourceOptions(providers={"kubernetes": p}))
            is p
        )
        found.append(conventions.kubernetes_provider(pulumi.ResourceOptions(providers=[p])) is p)

    run_program(program)
    assert found == [True, True, True]

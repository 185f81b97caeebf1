"""GPU groups without image_id get the node image DescribeUK8SImage offers for their GPU type
(the "-高性价比" images for those lines); with image_id set, that image is used as given."""

from __future__ import annotations

from typing import Any

import pytest

from components.ucloud.base import Timings
from components.ucloud.uk8s_cluster import Uk8sClusterProvider
from components.ucloud.uk8s_images import NodeImageError, choose_image
from components.ucloud.uk8s_node import Uk8sNodeProvider
from tests.fake_ucloud import FakeUCloud, uk8s_api
from tests.ucloud.conftest import cluster_inputs, node_inputs


@pytest.fixture
def cluster_id(ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]) -> str:
    return str(Uk8sClusterProvider(timings).create(cluster_inputs(network)).id)


def image_named(name: str) -> str:
    return next(i["ImageId"] for i in uk8s_api._images() if i["ImageName"] == name)


def sent(fake: FakeUCloud, action: str) -> dict[str, str]:
    return dict(fake.calls)[action]


@pytest.mark.parametrize(
    ("gpu_type", "image"), [("4090", "Ubuntu 24.04-高性价比"), ("T4", "Ubuntu 24.04")]
)
def test_a_gpu_group_without_image_gets_the_one_for_its_gpu_type(
    ucloud_env: FakeUCloud,
    timings: Timings,
    network: dict[str, str],
    cluster_id: str,
    gpu_type: str,
    image: str,
) -> None:
    inputs = node_inputs(cluster_id, network["subnet_id"], gpu_type=gpu_type)
    group = Uk8sNodeProvider(timings).create(inputs)
    asked = sent(ucloud_env, "DescribeUK8SImage")
    assert (asked["MachineType"], asked["GPUType"], asked["Zone"]) == ("G", gpu_type, "cn-bj2-05")
    assert sent(ucloud_env, "AddUK8SUHostNode")["ImageId"] == image_named(image)
    assert group.outs["node_image_id"] == image_named(image)
    assert group.outs["image_id"] is None  # the input stays unset: no diff next run
    assert not Uk8sNodeProvider(timings).diff(group.id, group.outs, inputs).changes


def test_an_image_id_that_is_set_is_used_as_given(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    chosen = image_named("Ubuntu 22.04-高性价比")
    group = Uk8sNodeProvider(timings).create(
        node_inputs(cluster_id, network["subnet_id"], image_id=chosen)
    )
    assert ucloud_env.count("DescribeUK8SImage") == 0
    assert sent(ucloud_env, "AddUK8SUHostNode")["ImageId"] == chosen
    assert group.outs["node_image_id"] == chosen


def test_growing_reuses_the_image_chosen_at_create(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    provider = Uk8sNodeProvider(timings)
    inputs = node_inputs(cluster_id, network["subnet_id"], count=1)
    group = provider.create(inputs)
    grown = provider.update(group.id, group.outs, {**inputs, "count": 2})
    assert ucloud_env.count("DescribeUK8SImage") == 1
    adds = [p for a, p in ucloud_env.calls if a == "AddUK8SUHostNode"]
    assert {p["ImageId"] for p in adds} == {group.outs["node_image_id"]}
    assert grown.outs is not None and grown.outs["node_image_id"] == group.outs["node_image_id"]


def test_a_cpu_group_leaves_the_image_to_uk8s(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    inputs = node_inputs(cluster_id, network["subnet_id"], machine_type="N", gpu_type=None)
    Uk8sNodeProvider(timings).create({**inputs, "gpu": None})
    assert ucloud_env.count("DescribeUK8SImage") == 0
    assert "ImageId" not in sent(ucloud_env, "AddUK8SUHostNode")


def test_an_answer_that_cannot_tell_the_lines_apart_is_refused(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str], cluster_id: str
) -> None:
    ucloud_env.next_creation(uk8s_api.IMAGE_SET, "silent")
    with pytest.raises(NodeImageError, match="gpuNodeImageId"):
        Uk8sNodeProvider(timings).create(node_inputs(cluster_id, network["subnet_id"]))
    assert ucloud_env.count("AddUK8SUHostNode") == 0


def image(image_id: str, name: str, gpus: list[str] | None = None, **more: Any) -> dict:
    listed = {"SupportedGPUTypes": gpus} if gpus is not None else {}
    return {"ImageId": image_id, "ImageName": name, "NotSupportGPU": False, **listed, **more}


def test_choose_image_prefers_the_listed_gpu_type_then_the_newest_ubuntu() -> None:
    unfiltered = [
        image("a", "Ubuntu 22.04-高性价比", ["4090"]),
        image("b", "Ubuntu 24.04", ["T4"]),
        image("c", "Ubuntu 24.04-高性价比", ["4090"]),
        image("d", "Centos 7.6", ["T4"]),
        image("e", "Ubuntu 26.04", ["4090"], NotSupportGPU=True),
    ]
    assert choose_image(unfiltered, "4090", "z") == "c"
    assert choose_image(unfiltered, "t4", "z") == "b"
    silent_standard = [image("x", "Centos 7.6"), image("y", "Ubuntu 20.04")]
    assert choose_image(silent_standard, "T4", "z") == "y"


def test_choose_image_refuses_when_nothing_fits() -> None:
    with pytest.raises(NodeImageError) as failure:
        choose_image([image("b", "Ubuntu 24.04", ["T4"])], "A800", "cn-wlcb-01")
    message = str(failure.value)
    assert "gpuType 'A800'" in message and "cn-wlcb-01" in message and "b (Ubuntu 24.04)" in message

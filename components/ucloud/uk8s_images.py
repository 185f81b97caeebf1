"""The UK8S node image for a GPU type, from DescribeUK8SImage, when the user names none.

Why: UCloudDoc-Team/uk8s administercluster/gpu-node.md:9-26 says the "高性价比" GPU lines need the
"…-高性价比" standard images and the other lines the plain ones, and an image left out is picked
for us (AddUK8SUHostNode ImageId: "不填时后台程序会自动选用一个可用的镜像", SDK client.py). No
source maps UHost's GpuType values to the "高性价比显卡3/4/5/6" names, so we do not keep a list:
we ask DescribeUK8SImage, which filters by GPUType ("适用GPU类型 … MachineType为G时必须提供",
SDK services/uk8s/client.py:1010-1049; UCloudDoc-Team/api uk8s-api/describe_uk8s_image.md), for
every GPU group, and take the newest Ubuntu among the images it says fit. That also avoids an
auto-picked CentOS 7.6 image, whose CUDA 11.0 driver (gpu-node.md:26) cannot run our CUDA 12 image.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from components.ucloud.api import UCloudApi
from components.ucloud.errors import UCloudProviderError

GPU_MACHINE_TYPE = "G"
# The marker of the images for the "高性价比" lines (gpu-node.md:11, :20-22).
VALUE_LINE_MARK = "高性价比"
_UBUNTU = re.compile(r"ubuntu\s*(\d+)\.(\d+)", re.IGNORECASE)


class NodeImageError(UCloudProviderError):
    """DescribeUK8SImage offers no image we can choose for this GPU type on our own."""


def _supports(image: Mapping[str, Any], gpu_type: str) -> bool | None:
    """True/False when the image lists SupportedGPUTypes (SDK models.py:276), None when silent."""
    listed = [str(t).lower() for t in image.get("SupportedGPUTypes") or []]
    return (gpu_type.lower() in listed) if listed else None


def _rank(image: Mapping[str, Any]) -> tuple[int, int, str]:
    """Sort key: the newest Ubuntu first, then the smallest id (so the choice is stable)."""
    name = f"{image.get('ImageName') or ''} {image.get('OsName') or ''}"
    match = _UBUNTU.search(name)
    major, minor = (int(match[1]), int(match[2])) if match else (-1, -1)
    return (-major, -minor, str(image.get("ImageId")))


def _label(image: Mapping[str, Any]) -> str:
    return f"{image.get('ImageId')} ({image.get('ImageName')})"


def choose_image(images: Sequence[Mapping[str, Any]], gpu_type: str, zone: str) -> str:
    """The ImageId to use for `gpu_type` among what DescribeUK8SImage returned."""
    # NotSupportGPU true means "不支持" GPU machine types (SDK client.py:1041).
    gpu_ready = [i for i in images if i.get("ImageId") and not i.get("NotSupportGPU")]
    named = [i for i in gpu_ready if _supports(i, gpu_type)]
    silent = [i for i in gpu_ready if _supports(i, gpu_type) is None]
    fitting = named or silent
    where = f"gpuType {gpu_type!r} in zone {zone!r}"
    if not fitting:
        offered = ", ".join(_label(i) for i in images) or "none"
        raise NodeImageError(
            f"image_id: DescribeUK8SImage offers no GPU node image for {where} (offered: "
            f"{offered}); set gpuNodeImageId (image_id) to a UK8S node image for this GPU"
        )
    value_line = {VALUE_LINE_MARK in str(i.get("ImageName") or "") for i in fitting}
    if not named and len(value_line) > 1:
        # Both kinds came back and none says which GPU types it fits: guessing could pick an
        # image whose driver does not match the card.
        raise NodeImageError(
            f"image_id: DescribeUK8SImage returned both '-{VALUE_LINE_MARK}' and standard images "
            f"for {where} without SupportedGPUTypes ({', '.join(_label(i) for i in fitting)}); "
            "set gpuNodeImageId (image_id) to the one that matches this GPU line"
        )
    return str(min(fitting, key=_rank)["ImageId"])


def gpu_node_image(api: UCloudApi, gpu_type: str, zone: str) -> str:
    """Ask DescribeUK8SImage for `gpu_type`'s node images in `zone` and choose one."""
    response = api.call(
        "uk8s",
        "describe_uk8s_image",
        {"MachineType": GPU_MACHINE_TYPE, "GPUType": gpu_type, "Zone": zone},
    )
    return choose_image(response.get("ImageSet") or [], gpu_type, zone)

"""dtype=auto: bfloat16 only from compute capability 8.0, float16 below, float32 on CPU; and the
stack's GPU-fit arithmetic assumes, for every UCloud GPU type, what the server will pick."""

from __future__ import annotations

import pytest
import torch
from llmserve import models
from llmserve.settings import load_settings

from components.stack import capacity
from components.ucloud import vocabulary


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        ((6, 1), torch.float16),  # P40, 1080Ti
        ((7, 0), torch.float16),  # V100, V100S
        ((7, 5), torch.float16),  # T4, T4S, 2080Ti
        ((8, 0), torch.bfloat16),  # A100, A800
        ((8, 6), torch.bfloat16),  # 3090
        ((8, 9), torch.bfloat16),  # 4090
        ((9, 0), torch.bfloat16),  # H20
    ],
)
def test_auto_picks_by_compute_capability(
    capability: tuple[int, int], expected: torch.dtype
) -> None:
    assert models.pick_dtype("auto", torch.device("cuda"), capability=capability) == expected


def test_auto_asks_the_device_when_no_capability_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[object] = []

    def capability(device: object) -> tuple[int, int]:
        asked.append(device)
        return (7, 5)

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    assert models.pick_dtype("auto", torch.device("cuda")) == torch.float16
    assert asked == [torch.device("cuda")]


def test_auto_is_float32_on_cpu_and_explicit_choices_win() -> None:
    assert models.pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert models.pick_dtype("float16", torch.device("cpu")) == torch.float16
    assert models.pick_dtype("bfloat16", torch.device("cuda"), capability=(7, 5)) == torch.bfloat16


def test_float16_is_a_setting() -> None:
    assert load_settings(env={"LLMSERVE_DTYPE": "float16"}).dtype == "float16"


@pytest.mark.parametrize("gpu_type", vocabulary.GPU_TYPES)
def test_the_stack_assumes_what_the_server_picks(gpu_type: str) -> None:
    capability = vocabulary.gpu_capability(gpu_type)
    if capability is None:
        # Unknown capability: the server picks bfloat16 or float16, both two bytes.
        assert capacity.DTYPE_BYTES[capacity.server_dtype(gpu_type)] == 2
        return
    server = models.pick_dtype("auto", torch.device("cuda"), capability=capability)
    assert capacity.server_dtype(gpu_type) == str(server).removeprefix("torch.")

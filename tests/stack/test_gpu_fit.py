"""The model must fit the GPU: weights at the server's dtype + KV cache + headroom."""

from __future__ import annotations

import pytest

from components.errors import ConfigError
from components.stack import capacity
from components.stack.config import parse
from tests.stack.stack_values import raw_values

CHATGLM2 = capacity.KNOWN_MODELS["thudm/chatglm2-6b"]


def problems(**overrides: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(raw_values("dev", **overrides), "dev")
    return caught.value.problems


def test_chatglm2_arithmetic_on_a_t4() -> None:
    need = capacity.gpu_need(CHATGLM2, "T4", 8192, 8, 16)
    assert need.dtype == "float16"  # T4 is compute capability 7.5
    assert need.weights_gib == pytest.approx(6.24e9 * 2 / 2**30)
    # 2 (K and V) x 28 layers x 2 KV heads x 128 x 2 bytes = 28 KiB per token
    assert CHATGLM2.kv_bytes_per_token(2) == 28 * 1024
    assert need.kv_gib == pytest.approx(8 * 8192 * 28 * 1024 / 2**30)
    assert need.total_gib <= 16


def test_a_model_that_cannot_fit_is_refused_with_what_would() -> None:
    (found,) = [p for p in problems(maxBatch=64) if "gpuType" in p]
    assert found.startswith("llm-uk8s:gpuType = 'T4': the model needs ")
    assert "GiB per GPU at float16" in found and "16 GiB" in found
    assert "maxBatch <= 8 (at maxModelLen 8192)" in found
    assert "maxModelLen <= 1039 (at maxBatch 64)" in found
    assert "V100S" in found and "A100" in found and "2080Ti," not in found


def test_the_shipped_stacks_fit() -> None:
    parse(raw_values("dev"), "dev")
    parse(raw_values("prod"), "prod")


def test_an_unknown_model_needs_its_shape() -> None:
    found = problems(modelRepoId="org/other-7b")
    assert any("modelShape" in p and "org/other-7b" in p for p in found)
    shape = "params=3.1e9,layers=36,kvHeads=2,headDim=128"
    parse(
        raw_values(
            "dev", modelRepoId="org/other-7b", modelShape=shape, maxModelLen=2048, maxBatch=2
        ),
        "dev",
    )
    assert any("modelShape = 'layers=x'" in p for p in problems(modelShape="layers=x"))


def test_unknown_memory_is_a_warning_not_a_refusal() -> None:
    config = parse(raw_values("dev", gpuType="T4A"), "dev")
    assert any("memory is undocumented" in w for w in config.warnings())

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


# ---- quantization: the quantized weights' size, and where fp8 runs --------------------------


def test_int8_weights_take_about_one_byte_a_parameter() -> None:
    """Linear layers at 1.01 bytes (1 + the per-channel scales), the embedding at the dtype."""
    need = capacity.gpu_need(CHATGLM2, "2080Ti", 8192, 8, 11, "int8")
    embedding = 65024 * 4096
    expected = (6.24e9 - embedding) * 1.01 + embedding * 2  # 2080Ti: float16
    assert need.weights_gib == pytest.approx(expected / 2**30)
    assert 6.0 < need.weights_gib < 6.2  # against 11.6 GiB unquantized
    assert need.kv_gib == capacity.gpu_need(CHATGLM2, "2080Ti", 8192, 8, 11).kv_gib


@pytest.mark.parametrize("gpu_type", ["2080Ti", "1080Ti"])
def test_int8_lets_chatglm2_6b_fit_an_11_gb_card(gpu_type: str) -> None:
    assert capacity.fits(CHATGLM2, gpu_type, 8192, 8) is False
    assert capacity.fits(CHATGLM2, gpu_type, 8192, 8, "int8") is True
    found = [p for p in problems(gpuType=gpu_type) if "gpuType" in p]
    assert len(found) == 1 and "quantization int8" in found[0]
    parse(raw_values("dev", gpuType=gpu_type, quantization="int8"), "dev")


def test_a_quantized_model_that_still_cannot_fit_says_so_with_its_size() -> None:
    (found,) = [p for p in problems(quantization="int8", maxBatch=256) if "gpuType" in p]
    assert "at float16 with int8 weights (weights 6.1 + KV cache" in found
    assert "quantization int8" not in found  # already asked for


def test_bad_quantization_names_the_key_and_the_allowed_values() -> None:
    found = [p for p in problems(quantization="int4") if "quantization" in p]
    assert found == ["llm-uk8s:quantization = 'int4': Input should be 'none', 'int8' or 'fp8'"]


@pytest.mark.parametrize(("gpu_type", "capability"), [("T4", "7.5"), ("A100", "8.0")])
def test_fp8_is_refused_below_compute_capability_8_9(gpu_type: str, capability: str) -> None:
    (found,) = [p for p in problems(gpuType=gpu_type, quantization="fp8") if "quantization" in p]
    assert found.startswith("llm-uk8s:quantization = 'fp8': FP8 needs a GPU of compute ")
    assert f"a {gpu_type} has compute capability {capability}" in found
    assert "allowed: quantization none or int8" in found and "4090" in found


def test_fp8_is_refused_where_the_capability_is_unknown() -> None:
    (found,) = [p for p in problems(gpuType="T4A", quantization="fp8") if "quantization" in p]
    assert "the compute capability of T4A is unknown" in found


@pytest.mark.parametrize("gpu_type", ["4090", "4090_48G", "H20"])
def test_fp8_is_accepted_from_8_9(gpu_type: str) -> None:
    config = parse(raw_values("dev", gpuType=gpu_type, quantization="fp8"), "dev")
    assert (
        config.inference_args(
            namespace="llm",
            model_claim_name="claim",
            model_dir=None,
            model_revision=None,
            runtime_class_name=None,
            node_address=None,
            wait_for=[],
        ).quantization
        == "fp8"
    )


def test_fp8_on_a_cpu_stack_is_left_to_the_server() -> None:
    """No GPU, no capability to check: the server runs fp8 on the CPU (slowly)."""
    parse(raw_values("local", quantization="fp8"), "local")


def test_every_known_capability_names_its_row_in_nvidias_table() -> None:
    from components.ucloud import vocabulary

    for name, spec in vocabulary.GPU_SPECS.items():
        if spec.capability is None:
            assert spec.capability_source.startswith("unknown"), name
            assert not capacity.fp8_runs_on(name)
            continue
        major, minor = spec.capability
        assert "developer.nvidia.com/cuda-gpus: " in spec.capability_source, name
        assert spec.capability_source.endswith(f", {major}.{minor}"), name
    fp8 = {n for n in vocabulary.GPU_SPECS if capacity.fp8_runs_on(n)}
    assert fp8 == {"4090", "4090_48G", "H20"}


def test_quantized_weights_are_refused_with_tensor_parallel() -> None:
    found = [
        p
        for p in problems(quantization="int8", gpusPerReplica=2, gpusPerNode=2)
        if "quantization" in p
    ]
    assert found == [
        "llm-uk8s:quantization = 'int8': with gpusPerReplica 2 the server shards the model over "
        "the pod's GPUs (LLMSERVE_TENSOR_PARALLEL), and it shards float weights only; allowed: "
        "quantization none with gpusPerReplica > 1, or gpusPerReplica 1"
    ]

"""Quantized Linear layers (llmserve.quantization) on CPU: error bounds, refusals, model swap.

Stated bounds, relative Frobenius error of one layer's output against the float product, for
Gaussian weights and activations: int8 weight-only <= 1% (measured 0.46% on the H200 at
ChatGLM2-6B's shapes), FP8 e4m3 weights and activations <= 6% (measured 3.7%)."""

from __future__ import annotations

import copy

import pytest
import torch
from llmserve import quantization as q
from llmserve.presets import build_random_model

CPU = torch.device("cpu")


def _rel(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.float() - ref).norm() / ref.norm())


def _linear(k: int, n: int, dtype: torch.dtype, bias: bool = True) -> torch.nn.Linear:
    torch.manual_seed(0)
    layer = torch.nn.Linear(k, n, bias=bias, dtype=dtype)
    torch.nn.init.normal_(layer.weight, std=0.02)
    if bias:
        torch.nn.init.normal_(layer.bias, std=0.02)
    return layer.requires_grad_(False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_linear_within_one_percent(dtype: torch.dtype) -> None:
    layer = _linear(512, 384, dtype)
    x = torch.randn(2, 5, 512, dtype=dtype)
    ref = torch.nn.functional.linear(x.float(), layer.weight.float(), layer.bias.float())
    y = q.Int8WeightOnlyLinear(layer)(x)
    assert y.shape == (2, 5, 384) and y.dtype == dtype
    assert _rel(y, ref) <= 0.01


def test_int8_linear_is_the_dequantized_product() -> None:
    """The kernel computes exactly x @ (int8 W * scale)^T + b, nothing looser."""
    layer = _linear(256, 128, torch.float32)
    module = q.Int8WeightOnlyLinear(layer)
    x = torch.randn(7, 256)
    dequantized = module.weight.float() * module.scale.float()[:, None]
    expected = x @ dequantized.t() + layer.bias
    assert torch.allclose(module(x), expected, rtol=1e-4, atol=1e-5)
    assert module.weight.dtype == torch.int8
    assert int(module.weight.abs().max()) == 127  # the scale uses the full int8 range


def test_fp8_linear_within_six_percent() -> None:
    layer = _linear(512, 384, torch.bfloat16)
    x = torch.randn(9, 512, dtype=torch.bfloat16)
    ref = torch.nn.functional.linear(x.float(), layer.weight.float(), layer.bias.float())
    y = q.Fp8Linear(layer)(x)
    assert y.dtype == torch.bfloat16
    assert module_weight_is_fp8(layer)
    assert _rel(y, ref) <= 0.06


def module_weight_is_fp8(layer: torch.nn.Linear) -> bool:
    return q.Fp8Linear(layer).weight.dtype == torch.float8_e4m3fn


def test_unknown_mode_names_the_setting_and_allowed_values() -> None:
    with pytest.raises(q.QuantizationError) as err:
        q.check_mode("int4", CPU)
    message = str(err.value)
    assert "LLMSERVE_QUANTIZATION='int4'" in message and "none, int8, fp8" in message


@pytest.mark.parametrize("capability", [(8, 6), (8, 0), (7, 5)])
def test_fp8_refused_below_compute_capability_8_9(capability: tuple[int, int]) -> None:
    with pytest.raises(q.QuantizationError) as err:
        q.check_mode("fp8", torch.device("cuda"), capability=capability)
    message = str(err.value)
    assert "LLMSERVE_QUANTIZATION='fp8'" in message and ">= 8.9" in message
    assert f"{capability[0]}.{capability[1]}" in message and "none, int8" in message


@pytest.mark.parametrize("capability", [(8, 9), (9, 0), (10, 0)])
def test_fp8_accepted_from_8_9(capability: tuple[int, int]) -> None:
    q.check_mode("fp8", torch.device("cuda"), capability=capability)
    q.check_mode("int8", torch.device("cuda"), capability=(7, 5))


def test_quantize_model_swaps_every_linear_and_keeps_outputs_close() -> None:
    model = build_random_model("tiny", CPU, torch.float32)
    ids = torch.randint(10, 1000, (1, 24), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        quantized = copy.deepcopy(model)
        linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
        assert q.quantize_model(quantized, "int8") == linears
        assert not any(isinstance(m, torch.nn.Linear) for m in quantized.modules())
        out = quantized(input_ids=ids).logits
    # The tiny preset's wide initializer makes it chaotic (errors grow layer by layer), so the
    # bound is looser than one layer's; a wrong scale or transposed weight gives ~100%.
    assert _rel(out, ref) <= 0.08
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.8
    assert q.weight_bytes(quantized) < 0.7 * q.weight_bytes(model)


def test_fp8_skips_shapes_the_kernel_refuses() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.Linear(48, 10))
    assert q.quantize_model(model, "fp8") == 1  # 10 outputs: not a multiple of 16
    assert isinstance(model[0], q.Fp8Linear) and isinstance(model[1], torch.nn.Linear)


def test_int8_on_the_cpu_keeps_layers_the_kernel_gets_wrong() -> None:
    """torch's CPU int8 kernel needs K (in_features) a multiple of 16: K=856 gave 1e33s and
    K=100 a segfault, so such layers stay float."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 856), torch.nn.Linear(856, 48))
    x = torch.randn(3, 32)
    with torch.no_grad():
        ref = model(x)
        assert q.quantize_loaded(model, "int8") == 1
        out = model(x)
    assert isinstance(model[0], q.Int8WeightOnlyLinear) and isinstance(model[1], torch.nn.Linear)
    assert _rel(out, ref) <= 0.01


def test_none_leaves_the_model_alone() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(16, 16))
    assert q.quantize_model(model, "none") == 0
    assert isinstance(model[0], torch.nn.Linear)


# ---- LLMSERVE_QUANTIZATION: the setting, its agreement with LLMSERVE_CPU_WEIGHTS, the load ----


def test_setting_takes_the_modes_and_names_them_when_refusing() -> None:
    from llmserve.settings import SettingsError, load_settings

    assert load_settings(env={}).quantization == "none"
    for mode in q.MODES:
        assert load_settings(env={"LLMSERVE_QUANTIZATION": mode.upper()}).quantization == mode
    with pytest.raises(SettingsError) as err:
        load_settings(env={"LLMSERVE_QUANTIZATION": "int4"})
    assert "LLMSERVE_QUANTIZATION='int4'" in str(err.value)
    assert "allowed: " + ", ".join(q.MODES) in str(err.value)


@pytest.mark.parametrize(
    ("mode", "cpu_weights", "expected"),
    [
        ("none", "auto", "auto"),
        ("none", "float", "float"),
        ("none", "int8", "int8"),
        ("int8", "auto", "int8"),  # int8 on the CPU is the CPU int8 weights
        ("int8", "int8", "int8"),
        ("fp8", "auto", "float"),  # fp8 starts from float weights, not the int8 cache
        ("fp8", "float", "float"),
    ],
)
def test_cpu_weights_follow_the_quantization_on_the_cpu(
    mode: str, cpu_weights: str, expected: str
) -> None:
    assert q.cpu_weights_for(mode, cpu_weights, CPU) == expected


@pytest.mark.parametrize(("mode", "cpu_weights"), [("int8", "float"), ("fp8", "int8")])
def test_contradicting_cpu_weights_are_refused(mode: str, cpu_weights: str) -> None:
    with pytest.raises(q.QuantizationError) as err:
        q.cpu_weights_for(mode, cpu_weights, CPU)
    message = str(err.value)
    assert f"LLMSERVE_QUANTIZATION={mode!r}" in message
    assert f"LLMSERVE_CPU_WEIGHTS={cpu_weights!r}" in message and "allowed:" in message


def test_cpu_weights_are_left_alone_on_cuda() -> None:
    cuda = torch.device("cuda")
    assert q.cpu_weights_for("int8", "float", cuda) == "float"


def test_a_refused_quantization_stops_the_load_before_any_weight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llmserve import models

    def must_not_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built before the quantization was checked")

    monkeypatch.setattr("llmserve.presets.build_random_model", must_not_build)
    monkeypatch.setattr(models, "load_gguf_tokenizer", must_not_build)
    with pytest.raises(q.QuantizationError, match="LLMSERVE_CPU_WEIGHTS='float'"):
        models.load_model("random:tiny", "cpu", "float32", cpu_weights="float", quantization="int8")


@pytest.mark.parametrize("mode", ["int8", "fp8"])
def test_load_model_quantizes_a_random_preset_and_logs_its_bytes(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    from llmserve.models import load_model

    caplog.set_level("INFO", logger="llmserve.models")
    loaded = load_model("random:tiny", "cpu", "float32", quantization=mode)
    cls = q.Int8WeightOnlyLinear if mode == "int8" else q.Fp8Linear
    layers = [m for m in loaded.model.modules() if isinstance(m, cls)]
    assert layers and not any(isinstance(m, torch.nn.Linear) for m in loaded.model.modules())
    if mode == "int8":  # the CPU int8 weights' kernel: bfloat16 activations and scales
        assert all(m.scale.dtype == torch.bfloat16 for m in layers)
    gigabytes = f"{q.weight_bytes(loaded.model) / 1e9:.3f} GB"
    assert any(
        gigabytes in r.getMessage() and f"LLMSERVE_QUANTIZATION={mode}" in r.getMessage()
        for r in caplog.records
    )


def test_int8_on_the_cpu_uses_the_cpu_weight_cache(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LLMSERVE_QUANTIZATION=int8 on an HF directory is LLMSERVE_CPU_WEIGHTS=int8: the same
    converted entry, saved once under the cache."""
    from llmserve import cpu_weights
    from llmserve.models import load_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model_dir = tmp_path / "model"
    build_random_model("tiny-llama", CPU, torch.float32).save_pretrained(model_dir)
    load_random_tokenizer(model_dir)
    loaded = load_model(str(model_dir), "cpu", "float32", quantization="int8")
    entry = cpu_weights.entry_dir(cpu_weights.source_digest(model_dir))
    assert (entry / cpu_weights.MANIFEST_FILE).is_file()
    assert any(isinstance(m, q.Int8WeightOnlyLinear) for m in loaded.model.modules())


def load_random_tokenizer(model_dir) -> None:
    """The bundled SmolLM2 tokenizer, saved next to the weights (what an HF directory has)."""
    from llmserve.models import bundled_smollm2_gguf, load_gguf_tokenizer

    load_gguf_tokenizer(bundled_smollm2_gguf()).save_pretrained(model_dir)


def test_the_server_passes_the_setting_to_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmserve.server import build_backend
    from llmserve.settings import load_settings

    seen: dict[str, object] = {}

    class Loaded(Exception):
        pass

    def record(*args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise Loaded

    monkeypatch.setattr("llmserve.server.load_model", record)
    settings = load_settings(
        env={
            "LLMSERVE_MODEL": "random:tiny",
            "LLMSERVE_DEVICE": "cpu",
            "LLMSERVE_QUANTIZATION": "fp8",
        }
    )
    with pytest.raises(Loaded):
        build_backend(settings)
    assert seen["quantization"] == "fp8"


@pytest.mark.parametrize(("capability", "compiled"), [((6, 1), False), ((7, 0), True)])
def test_int8_compiles_only_where_triton_runs(
    capability: tuple[int, int], compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """P40 and 1080Ti (6.1) have no Triton: their int8 layers stay eager, not broken."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert q.compiles_int8(torch.device("cuda")) is compiled
    assert q.compiles_int8(CPU) is False


# ---- a whole model: the logit error of quantized weights against bf16 on the same weights ----

GLM_SMALL = dict(  # ChatGLM2-6B's proportions (head_dim, KV heads, FFN ratio), far smaller
    vocab_size=4096,
    hidden_size=256,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    intermediate_size=864,
    head_dim=128,
    partial_rotary_factor=0.5,
    max_position_embeddings=512,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
# Stated bounds for this model, teacher-forced over 96 tokens (bench/quant_quality.py measures
# the same on a 0.24 B model and 256 tokens): relative L2 error of the logits, mean cosine and
# mean KL(bf16 || quantized) of the next-token distributions.
LOGIT_BOUNDS = {"int8": (0.04, 0.999, 1e-4), "fp8": (0.15, 0.99, 1e-3)}


@pytest.fixture(scope="module")
def glm_small() -> torch.nn.Module:
    from transformers import GlmConfig, GlmForCausalLM

    config = GlmConfig(**GLM_SMALL)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return GlmForCausalLM(config).to(torch.bfloat16).eval()


@pytest.mark.parametrize("mode", ["int8", "fp8"])
def test_quantized_logits_stay_within_the_stated_error(glm_small, mode: str) -> None:
    rel_bound, cosine_bound, kl_bound = LOGIT_BOUNDS[mode]
    ids = torch.randint(10, 4000, (1, 96), generator=torch.Generator().manual_seed(1))
    quantized = copy.deepcopy(glm_small)
    assert q.quantize_loaded(quantized, mode) == 2 * 6 + 1  # q, k, v, o, gate_up, down; lm_head
    with torch.inference_mode():
        ref = glm_small(input_ids=ids).logits[0].float()
        out = quantized(input_ids=ids).logits[0].float()
    log_p, log_q = ref.log_softmax(-1), out.log_softmax(-1)
    kl = float((log_p.exp() * (log_p - log_q)).sum(-1).mean())
    assert _rel(out, ref) <= rel_bound
    assert float(torch.cosine_similarity(out, ref, dim=-1).mean()) >= cosine_bound
    assert kl <= kl_bound


def test_a_server_with_int8_weights_serves_and_logs_their_size(tmp_path) -> None:
    from tests.llm_server import start_server

    server = start_server(
        tmp_path, "random:tiny", quantization="int8", max_batch="2", log_level="info"
    )
    try:
        with server.http() as http:
            reply = http.post(
                "/v1/completions",
                json={"model": "random-tiny", "prompt": "hello", "max_tokens": 4},
            )
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] == 4
        log = server.log()
        assert "LLMSERVE_QUANTIZATION=int8" in log and "weights of random-tiny:" in log
    finally:
        server.stop()

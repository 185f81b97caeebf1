"""The lean one-row CPU step (cpu_decode.py) computes what transformers' forward computes over
the same fixed buffers: same greedy tokens and logits within float rounding, for float, int8
and int4 Linears of a tiny random Llama; models it does not cover keep the forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llmserve.cpu_decode import LlamaCpuStep, _concatenated, unsupported_reason
from llmserve.graphs import GraphedDecoder
from llmserve.int4_cpu import Int4WeightOnlyLinear
from llmserve.kvcache import BatchCache
from llmserve.presets import build_random_model
from llmserve.quantization import quantize_model
from torch import nn
from transformers import DynamicCache

PROMPT = [1, 17, 300, 4000, 42, 9, 1000]


def _greedy(model: nn.Module, lean: bool, steps: int) -> tuple[list[int], torch.Tensor]:
    decoder = GraphedDecoder(
        model, max_rows=1, max_len=64, pad_token_id=0, use_cuda_graphs=False, lean_cpu_step=lean
    )
    assert (decoder._cpu_step is not None) == lean
    ids = torch.tensor([PROMPT])
    mask = torch.ones_like(ids)
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True)
        batch = BatchCache()
        batch.append(cache, mask)
        token = int(out.logits[0, -1].argmax())
        tokens, logits = [], []
        for step in range(steps):
            step_logits = decoder.decode(batch, [token], [len(PROMPT) + step])
            token = int(step_logits[0].argmax())
            tokens.append(token)
            logits.append(step_logits.clone())
    return tokens, torch.cat(logits)


def _int4(model: nn.Module) -> nn.Module:
    """Every Linear of the decoder layers as int4 of its own round-to-nearest Q4_1 blocks."""
    for name, module in list(model.model.layers.named_modules()):
        if not isinstance(module, nn.Linear):
            continue
        w = module.weight.detach().reshape(module.out_features, -1, 32)
        low, high = w.amin(-1), w.amax(-1)
        d = ((high - low) / 15).clamp(min=1e-8)
        codes = torch.round((w - low[..., None]) / d[..., None]).clamp(0, 15)
        parent_name, _, child = name.rpartition(".")
        parent = model.model.layers.get_submodule(parent_name)
        setattr(
            parent,
            child,
            Int4WeightOnlyLinear.from_q4_1(
                codes.reshape(module.weight.shape).to(torch.uint8).numpy(),
                d.numpy().astype(np.float32),
                low.numpy().astype(np.float32),
            ),
        )
    return model


@pytest.mark.parametrize("kind", ["float", "int8", "int4"])
def test_lean_step_gives_the_forwards_tokens(kind: str) -> None:
    model = build_random_model("tiny-llama", torch.device("cpu"), torch.float32).eval()
    if kind == "int8":
        quantize_model(model, "int8")
    elif kind == "int4":
        _int4(model)
    tokens_lean, logits_lean = _greedy(model, lean=True, steps=24)
    tokens_hf, logits_hf = _greedy(model, lean=False, steps=24)
    assert tokens_lean == tokens_hf
    spread = (logits_hf.max() - logits_hf.min()).item()
    # float: fused rms_norm against the six-op one; int8/int4: the bf16 rounding of the
    # matmul input can flip where float32 inputs differ in the last bit
    tolerance = 1e-5 if kind == "float" else 0.02
    assert (logits_lean - logits_hf).abs().max().item() <= tolerance * spread


def test_concatenated_projections_equal_the_separate_ones() -> None:
    parts = [nn.Linear(64, n, bias=False) for n in (64, 32, 32)]
    fused = _concatenated(parts)
    assert fused is not None
    x = torch.randn(1, 1, 64)
    with torch.inference_mode():
        assert torch.equal(fused(x), torch.cat([p(x) for p in parts], dim=-1))
    assert _concatenated([nn.Linear(64, 8, bias=False), nn.Identity()]) is None


def test_other_models_keep_the_forward() -> None:
    glm = build_random_model("tiny", torch.device("cpu"), torch.float32)
    assert unsupported_reason(glm) is not None
    decoder = GraphedDecoder(glm, max_rows=1, max_len=64, pad_token_id=0, use_cuda_graphs=False)
    assert decoder._cpu_step is None
    llama = build_random_model("tiny-llama", torch.device("cpu"), torch.float32)
    assert unsupported_reason(llama) is None
    llama.model.layers[1].self_attn.q_proj.bias = nn.Parameter(torch.zeros(64))
    assert unsupported_reason(llama) == "a projection has a bias"


def test_a_position_past_the_table_is_refused() -> None:
    model = build_random_model("tiny-llama", torch.device("cpu"), torch.float32)
    step = LlamaCpuStep(model, max_positions=8)
    with pytest.raises(ValueError, match=r"position 8 is outside 0\.\.7"):
        step(5, 8, [], [], 0, torch.ones(1, dtype=torch.bool))


def test_padded_columns_are_not_attended() -> None:
    """A row left with padding in front (rows of different lengths shared the batch): its
    step gives the logits of the same row with the padding cut out of the buffers."""
    model = build_random_model("tiny-llama", torch.device("cpu"), torch.float32).eval()
    step = LlamaCpuStep(model, max_positions=64)
    layers, pad, real = len(model.model.layers), 3, 9
    shape = (1, step.kv_heads, 32, step.head_dim)
    generator = torch.Generator().manual_seed(0)
    keys = [torch.randn(shape, generator=generator) for _ in range(layers)]
    values = [torch.randn(shape, generator=generator) for _ in range(layers)]
    mask = torch.tensor([False] * pad + [True] * (real + 1))
    cut_keys = [k[:, :, pad:].clone() for k in keys]
    cut_values = [v[:, :, pad:].clone() for v in values]
    with torch.inference_mode():
        padded = step(17, real, keys, values, pad + real, mask)
        cut = step(17, real, cut_keys, cut_values, real, torch.ones(real + 1, dtype=torch.bool))
        keys[0][:, :, :pad] = 1e4  # whatever the padding holds, it is not attended
        again = step(17, real, keys, values, pad + real, mask)
    assert torch.allclose(padded, cut, atol=1e-5)
    assert torch.allclose(again, padded, atol=1e-5)

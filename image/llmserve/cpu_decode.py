"""A one-row decode step for Llama models on the CPU, straight over the model's own weights.

Why: on the CPU nothing hides per-operation cost the way a replayed CUDA graph does, and
transformers' forward spends ~500 small operations a step for SmolLM2-135M (casts, reshapes,
the six-op RMSNorm, mask and cache bookkeeping) around 211 matrix-vector products. This step
does the same arithmetic in about 20 operations a layer: torch's fused rms_norm, q/k/v and
gate/up each as one matmul over weights concatenated once at start-up (checked to give the
separate products' values), rotary from a table built once by the model's own rotary module,
keys and values written straight into the fixed buffers, and sdpa over the grouped query heads.
Prefill and batches of more than one row still run the model's forward.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from llmserve.int4_cpu import Int4WeightOnlyLinear
from llmserve.quantization import Int8WeightOnlyLinear

log = logging.getLogger("llmserve.cpu_decode")

# transformers' Llama and cpu_llama.py's (the CPU weight cache's), which has the same modules
SUPPORTED_MODELS = frozenset({"LlamaForCausalLM", "LeanLlamaForCausalLM"})
SUPPORTED_NORMS = frozenset({"LlamaRMSNorm", "LeanLlamaRMSNorm"})
FUSION_CHECK_TOL = 0.0  # concatenated weights must give the separate products exactly


def unsupported_reason(model: Any) -> str | None:
    """Why this step cannot run `model` (None: it can)."""
    name = type(model).__name__
    if name not in SUPPORTED_MODELS:
        return f"{name} is not one of {', '.join(sorted(SUPPORTED_MODELS))}"
    config = model.config
    if getattr(config, "hidden_act", None) != "silu":
        return f"hidden_act {config.hidden_act!r} is not silu"
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if isinstance(rope, dict) and rope.get("rope_type", "default") == "dynamic":
        return "dynamic rotary scaling depends on the length"
    for layer in model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        linears = [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj]
        if any(getattr(m, "bias", None) is not None for m in [*linears, mlp.up_proj]):
            return "a projection has a bias"
        norms = [layer.input_layernorm, layer.post_attention_layernorm]
        if any(type(n).__name__ not in SUPPORTED_NORMS for n in norms):
            return "a norm is not LlamaRMSNorm"
    if type(model.model.norm).__name__ not in SUPPORTED_NORMS:
        return "the final norm is not LlamaRMSNorm"
    return None


def _concatenated(parts: list[nn.Module]) -> nn.Module | None:
    """One module computing torch.cat([p(x) for p in parts], -1), or None where the parts'
    kind cannot be concatenated (or the result would differ)."""
    first = parts[0]
    if all(type(p) is nn.Linear for p in parts):
        fused: nn.Module = nn.Linear(first.in_features, sum(p.out_features for p in parts), False)
        fused.weight = nn.Parameter(torch.cat([p.weight for p in parts]), requires_grad=False)
    elif all(type(p) is Int8WeightOnlyLinear for p in parts):
        fused = Int8WeightOnlyLinear.empty(
            first.in_features, sum(p.out_features for p in parts), False
        )
        fused.weight = torch.cat([p.weight for p in parts])
        fused.scale = torch.cat([p.scale for p in parts])
    elif all(type(p) is Int4WeightOnlyLinear for p in parts):
        fused = Int4WeightOnlyLinear(
            first.in_features,
            sum(p.out_features for p in parts),
            torch.cat([p.weight for p in parts]),
            torch.cat([p.scales_and_zeros for p in parts], dim=1).contiguous(),
            None,
        )
    else:
        return None
    probe = torch.randn(1, 1, first.in_features, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = torch.cat([p(probe) for p in parts], dim=-1)
        got = fused(probe)
    if not torch.equal(want, got):  # e.g. an int4 packing not local to its rows
        return None
    return fused


def _projection(parts: list[nn.Module]) -> Callable[[torch.Tensor], torch.Tensor]:
    fused = _concatenated(parts)
    if fused is not None:
        return fused
    return lambda x: torch.cat([p(x) for p in parts], dim=-1)


@dataclass
class _Layer:
    input_norm: torch.Tensor
    qkv: Callable[[torch.Tensor], torch.Tensor]
    o_proj: nn.Module
    post_norm: torch.Tensor
    gate_up: Callable[[torch.Tensor], torch.Tensor]
    down: nn.Module


class LlamaCpuStep:
    """Decode one row: logits [1, 1, vocab] for `token` at `position`, its key and value
    written into column `column` of the per-layer buffers [rows, kv heads, columns, dim]."""

    def __init__(self, model: Any, max_positions: int) -> None:
        config = model.config
        inner = model.model
        attn = inner.layers[0].self_attn
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.head_dim = int(attn.head_dim)
        self.scaling = float(attn.scaling)
        self.hidden = int(config.hidden_size)
        self.eps = float(inner.norm.variance_epsilon)
        self.embed = inner.embed_tokens.weight
        self.final_norm = inner.norm.weight
        self.lm_head = model.lm_head
        self.layers = [
            _Layer(
                input_norm=layer.input_layernorm.weight,
                qkv=_projection(
                    [layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]
                ),
                o_proj=layer.self_attn.o_proj,
                post_norm=layer.post_attention_layernorm.weight,
                gate_up=_projection([layer.mlp.gate_proj, layer.mlp.up_proj]),
                down=layer.mlp.down_proj,
            )
            for layer in inner.layers
        ]
        self.max_positions = max_positions
        with torch.inference_mode():
            positions = torch.arange(max_positions)[None, :]
            probe = torch.zeros(1, 1, self.hidden, dtype=self.embed.dtype)
            cos, sin = inner.rotary_emb(probe, positions)
        # [positions, 1, dim]: one row broadcasts over the q and k heads
        self.cos, self.sin = cos[0, :, None, :].contiguous(), sin[0, :, None, :].contiguous()

    @staticmethod
    def _attention_bias(mask: torch.Tensor) -> torch.Tensor | None:
        """The boolean mask as sdpa would turn it into an additive one, once per step rather
        than once per layer; None where every column is attended (a row with no padding),
        which sdpa then skips altogether."""
        if bool(mask.all()):
            return None
        bias = torch.zeros(mask.shape, dtype=torch.float32).masked_fill_(~mask, float("-inf"))
        return bias.view(1, 1, 1, -1)

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # LlamaRMSNorm's arithmetic (float32 here), as one fused kernel plus the weight
        return weight * nn.functional.rms_norm(x, (self.hidden,), eps=self.eps)

    def __call__(
        self,
        token: int,
        position: int,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        column: int,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        if not 0 <= position < self.max_positions:
            raise ValueError(f"position {position} is outside 0..{self.max_positions - 1}")
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        q_width, qk_heads = heads * dim, heads + kv_heads
        cos, sin, half = self.cos[position], self.sin[position], dim // 2
        window = mask.shape[-1]
        attend = self._attention_bias(mask)
        h = self.embed[token].view(1, self.hidden)
        for i, layer in enumerate(self.layers):
            qkv = layer.qkv(self._norm(h, layer.input_norm))
            qk = qkv[:, : qk_heads * dim].view(qk_heads, dim)
            rotated = torch.cat([-qk[:, half:], qk[:, :half]], dim=-1)
            qk = qk * cos + rotated * sin
            keys[i][0, :, column] = qk[heads:]
            values[i][0, :, column] = qkv[0, qk_heads * dim :].view(kv_heads, dim)
            # [1, heads, 1, dim] against the kv heads: sdpa's own grouped-query path is ~20%
            # faster on the CPU than folding the groups into the query length
            # (bench/cpu_attention.py, torch 2.13, 2 threads: 15 against 21 us at 128 keys,
            # 46 against 57 at 640); ~0.2-0.3 ms of a ~8 ms SmolLM2 step
            out = nn.functional.scaled_dot_product_attention(
                qk[:heads].view(1, heads, 1, dim),
                keys[i][:1, :, :window],
                values[i][:1, :, :window],
                attn_mask=attend,
                scale=self.scaling,
                enable_gqa=heads != kv_heads,
            )
            h = h + layer.o_proj(out.reshape(1, q_width))
            gate, up = layer.gate_up(self._norm(h, layer.post_norm)).chunk(2, dim=-1)
            h = h + layer.down(nn.functional.silu(gate) * up)
        return self.lm_head(self._norm(h, self.final_norm)).view(1, 1, -1)


def llama_cpu_step(model: Any, max_positions: int) -> LlamaCpuStep | None:
    """The lean step for `model`, or None (logged) where it does not apply."""
    reason = unsupported_reason(model)
    if reason is not None:
        log.info("one-row CPU steps run the model's forward: %s", reason)
        return None
    return LlamaCpuStep(model, max_positions)

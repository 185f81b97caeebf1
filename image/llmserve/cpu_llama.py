"""A Llama causal LM for the CPU weight cache, without transformers' modeling code.

Why: importing transformers' Llama modeling (modeling_utils, masking_utils) imports
torch.distributed.tensor, torch._dynamo and sympy, and the first import of anything under
transformers.models scans every model's source: together ~40% of a second start's imports
on the 2-core development machine (`python -X importtime`), for a model whose weights are
already converted and cached (cpu_weights.py). This module is the same forward over the same
module tree (parameter names, `q_proj`... `lm_head`, `rotary_emb`, so the cache's tensors and
cpu_decode.LlamaCpuStep apply unchanged), built only from torch and transformers' light
DynamicCache (which the engine imports anyway).

The arithmetic is transformers' own, op for op (LlamaRMSNorm in float32, rotate-half rotary
from the cached inv_freq, sdpa with the causal and padding mask that masking_utils builds, and
its choice between no mask, enable_gqa, packed one-token queries and repeat_kv), so greedy
output is unchanged: tests/server/test_cpu_llama.py compares logits and greedy tokens with
transformers' LlamaForCausalLM on the same weights. Only what the engine calls is supported:
forward(input_ids, attention_mask (2D, or a 4D boolean mask), position_ids, cache, use_cache,
logits_to_keep: int); `supported_reason` says which configs are served (others load through
transformers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers.configuration_utils import PreTrainedConfig

MAX_GQA_HEAD_DIM = 256  # transformers' use_gqa_in_sdpa: enable_gqa only up to this head size

LinearFactory = Callable[[str, int, int], nn.Module]


class LeanLlamaConfig(PreTrainedConfig):
    """A Llama config.json as saved by transformers' LlamaConfig, read without importing
    transformers.models (whose first import scans every model's source)."""

    model_type = "llama"


def unsupported_reason(config: Any) -> str | None:
    """Why this module cannot serve `config` (None: it can)."""
    if getattr(config, "model_type", None) != "llama":
        return f"model_type {getattr(config, 'model_type', None)!r} is not llama"
    if getattr(config, "hidden_act", None) != "silu":
        return f"hidden_act {getattr(config, 'hidden_act', None)!r} is not silu"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "a projection has a bias"
    rope = getattr(config, "rope_parameters", None) or {}
    if not isinstance(rope, dict) or rope.get("rope_type", "default") != "default":
        return f"rotary {rope!r} is not the default kind"
    if getattr(config, "sliding_window", None) or any(
        kind != "full_attention" for kind in getattr(config, "layer_types", None) or []
    ):
        return "a layer does not use full attention"
    if getattr(config, "pretraining_tp", 1) not in (1, None):
        return "pretraining_tp is not 1"
    return None


def _float_linear(_name: str, in_features: int, out_features: int) -> nn.Module:
    return nn.Linear(in_features, out_features, bias=False)


class LeanLlamaRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class LeanLlamaRotary(nn.Module):
    """Default rotary; inv_freq comes from the cache entry (the values transformers built)."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        # On the CPU even inside torch.device("meta"): arange on meta goes through torch._refs,
        # which imports torch._dynamo. A cache entry's own inv_freq replaces these values.
        steps = torch.arange(0, head_dim, 2, dtype=torch.float, device="cpu")
        inv_freq = 1.0 / (theta ** (steps / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)
        self.attention_scaling = 1.0

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _repeat_kv(states: torch.Tensor, n_rep: int) -> torch.Tensor:
    batch, heads, length, dim = states.shape
    expanded = states[:, :, None, :, :].expand(batch, heads, n_rep, length, dim)
    return expanded.reshape(batch, heads * n_rep, length, dim)


class LeanLlamaAttention(nn.Module):
    def __init__(self, config: Any, layer_idx: int, prefix: str, linear: LinearFactory) -> None:
        super().__init__()
        hidden, heads = int(config.hidden_size), int(config.num_attention_heads)
        kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        self.layer_idx = layer_idx
        self.head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
        self.num_key_value_groups = heads // kv_heads
        self.scaling = self.head_dim**-0.5
        self.q_proj = linear(f"{prefix}.q_proj", hidden, heads * self.head_dim)
        self.k_proj = linear(f"{prefix}.k_proj", hidden, kv_heads * self.head_dim)
        self.v_proj = linear(f"{prefix}.v_proj", hidden, kv_heads * self.head_dim)
        self.o_proj = linear(f"{prefix}.o_proj", heads * self.head_dim, hidden)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: Any,
    ) -> torch.Tensor:
        batch, q_length, _ = hidden_states.shape
        shape = (batch, q_length, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        query = (query * cos) + (_rotate_half(query) * sin)
        key = (key * cos) + (_rotate_half(key) * sin)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        extra: dict[str, Any] = {}
        groups = self.num_key_value_groups
        if groups > 1:  # transformers' sdpa_attention_forward, branch for branch
            if mask is None and key.shape[-1] == value.shape[-1] <= MAX_GQA_HEAD_DIM:
                extra["enable_gqa"] = True
            elif q_length == 1:
                query = query.reshape(batch, query.shape[1] // groups, groups, self.head_dim)
                if mask is not None and mask.shape[1] != 1:
                    mask = mask.reshape(mask.shape[0], mask.shape[1] // groups, groups, -1)
            else:
                key, value = _repeat_kv(key, groups), _repeat_kv(value, groups)
        out = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=mask,
            dropout_p=0.0,
            scale=self.scaling,
            is_causal=q_length > 1 and mask is None,
            **extra,
        )
        out = out.reshape(out.shape[0], -1, q_length, value.shape[-1]).transpose(1, 2)
        return self.o_proj(out.contiguous().reshape(batch, q_length, -1).contiguous())


class LeanLlamaMLP(nn.Module):
    def __init__(self, config: Any, prefix: str, linear: LinearFactory) -> None:
        super().__init__()
        hidden, inner = int(config.hidden_size), int(config.intermediate_size)
        self.gate_proj = linear(f"{prefix}.gate_proj", hidden, inner)
        self.up_proj = linear(f"{prefix}.up_proj", hidden, inner)
        self.down_proj = linear(f"{prefix}.down_proj", inner, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LeanLlamaDecoderLayer(nn.Module):
    def __init__(self, config: Any, layer_idx: int, linear: LinearFactory) -> None:
        super().__init__()
        prefix = f"model.layers.{layer_idx}"
        eps = float(config.rms_norm_eps)
        self.self_attn = LeanLlamaAttention(config, layer_idx, f"{prefix}.self_attn", linear)
        self.mlp = LeanLlamaMLP(config, f"{prefix}.mlp", linear)
        self.input_layernorm = LeanLlamaRMSNorm(int(config.hidden_size), eps)
        self.post_attention_layernorm = LeanLlamaRMSNorm(int(config.hidden_size), eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        attended = self.self_attn(self.input_layernorm(hidden_states), mask, cos, sin, cache)
        hidden_states = residual + attended
        residual = hidden_states
        return residual + self.mlp(self.post_attention_layernorm(hidden_states))


class LeanLlamaModel(nn.Module):
    def __init__(self, config: Any, linear: LinearFactory) -> None:
        super().__init__()
        hidden = int(config.hidden_size)
        vocab = int(config.vocab_size)
        # An explicit (zero) weight: nn.Embedding's random init under torch.device("meta") goes
        # through torch._refs, whose first use imports torch._dynamo (~1 s); the values come
        # from the cache entry anyway.
        self.embed_tokens = nn.Embedding(vocab, hidden, _weight=torch.zeros(vocab, hidden))
        self.layers = nn.ModuleList(
            LeanLlamaDecoderLayer(config, i, linear) for i in range(int(config.num_hidden_layers))
        )
        self.norm = LeanLlamaRMSNorm(hidden, float(config.rms_norm_eps))
        head_dim = int(
            getattr(config, "head_dim", None) or hidden // int(config.num_attention_heads)
        )
        self.rotary_emb = LeanLlamaRotary(head_dim, float(config.rope_parameters["rope_theta"]))


@dataclass
class CausalLMOutput:
    logits: torch.Tensor
    cache: Any = None


def causal_mask(
    attention_mask: torch.Tensor | None, batch: int, q_length: int, past: int
) -> torch.Tensor | None:
    """masking_utils.create_causal_mask for sdpa over a dynamic cache: None where sdpa's own
    is_causal (or no mask) gives the same attention, else a boolean [batch, 1, q, kv] mask."""
    if attention_mask is not None and attention_mask.dim() == 4:
        return attention_mask  # already built (the fixed-buffer step's), as transformers does
    kv_length = past + q_length
    padding = None
    if attention_mask is not None:
        padding = attention_mask.bool()[:, :kv_length]
        if padding.shape[-1] < kv_length:
            padding = F.pad(padding, (0, kv_length - padding.shape[-1]), value=False)
    if (q_length == 1 or kv_length == q_length) and (padding is None or bool(padding.all())):
        return None
    device = attention_mask.device if attention_mask is not None else None
    queries = torch.arange(q_length, device=device) + past
    allowed = torch.arange(kv_length, device=device)[None, :] <= queries[:, None]
    allowed = allowed[None, None, :, :]
    if padding is not None:
        allowed = allowed & padding[:, None, None, :]
    return allowed.expand(batch, 1, q_length, kv_length)


class LeanLlamaForCausalLM(nn.Module):
    """transformers' LlamaForCausalLM forward for the engine's calls (see the module doc)."""

    def __init__(self, config: Any, linear: LinearFactory = _float_linear) -> None:
        super().__init__()
        reason = unsupported_reason(config)
        if reason is not None:
            raise ValueError(f"the lean Llama cannot serve this config: {reason}")
        self.config = config
        self.generation_config: Any = None
        self.model = LeanLlamaModel(config, linear)
        self.lm_head = linear("lm_head", int(config.hidden_size), int(config.vocab_size))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
    ) -> CausalLMOutput:
        batch, q_length = input_ids.shape
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = (torch.arange(q_length, device=input_ids.device) + past)[None, :]
        hidden = self.model.embed_tokens(input_ids)
        mask = causal_mask(attention_mask, batch, q_length, past)
        cos, sin = self.model.rotary_emb(hidden, position_ids)
        for layer in self.model.layers:
            hidden = layer(hidden, mask, cos, sin, cache)
        hidden = self.model.norm(hidden)
        if logits_to_keep:
            hidden = hidden[:, -int(logits_to_keep) :, :]
        return CausalLMOutput(logits=self.lm_head(hidden), cache=cache)

"""ChatGLM2-6B / ChatGLM3-6B checkpoints, as published (model_type 'chatglm', remote code), loaded
into transformers' native GlmForCausalLM.

Their modeling code targets transformers 4.x, but the architecture is the one transformers 5
calls `glm`: RMSNorm, one fused query_key_value projection with bias and grouped KV heads, rotary
embedding on the first half of each head with interleaved pairs, SwiGLU with a fused up
projection, a final norm and an untied output layer. So the weights only need renaming and the
fused QKV matrix splitting; no remote code runs. Other variants (the first ChatGLM-6B, P-tuning
prefixes, int4/int8 checkpoints, post-layernorm residuals) are refused with the reason."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import GlmConfig, GlmForCausalLM
from transformers.models.glm.modeling_glm import GlmRotaryEmbedding

from llmserve.weight_loading import (
    WeightFileError,
    load_safetensors,
    on_network_filesystem,
    prefetch,
)


class ChatGLMCheckpointError(ValueError):
    """The checkpoint is a ChatGLM variant this converter does not handle."""


def is_chatglm_checkpoint(path: Path) -> bool:
    config = path / "config.json"
    if not config.is_file():
        return False
    return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "chatglm"


# (config field, value this converter needs, what it means when different)
_REQUIRED = [
    ("rmsnorm", True, "LayerNorm instead of RMSNorm"),
    ("post_layer_norm", True, "no final norm"),
    ("apply_residual_connection_post_layernorm", False, "residuals taken after the norm"),
    ("add_bias_linear", False, "biases on dense layers"),
]


def glm_config_from_chatglm(raw: dict[str, Any]) -> GlmConfig:
    if "padded_vocab_size" not in raw or "kv_channels" not in raw:
        raise ChatGLMCheckpointError(
            "config.json looks like the first-generation ChatGLM-6B (no padded_vocab_size / "
            "kv_channels); allowed: ChatGLM2-6B and ChatGLM3-6B checkpoints"
        )
    for field, needed, meaning in _REQUIRED:
        if raw.get(field, needed) != needed:
            raise ChatGLMCheckpointError(
                f"config.json {field}={raw.get(field)!r} ({meaning}) is not supported; "
                f"allowed: {needed!r}"
            )
    if raw.get("pre_seq_len"):
        raise ChatGLMCheckpointError(
            f"config.json pre_seq_len={raw['pre_seq_len']!r}: P-tuning prefixes are not "
            "supported; allowed: null (merge or drop the prefix encoder first)"
        )
    if raw.get("quantization_bit"):
        raise ChatGLMCheckpointError(
            f"config.json quantization_bit={raw['quantization_bit']!r}: quantized ChatGLM "
            "checkpoints are not supported; allowed: 0 (use the fp16/bf16 checkpoint)"
        )
    heads = int(raw["num_attention_heads"])
    kv_heads = int(raw["multi_query_group_num"]) if raw.get("multi_query_attention") else heads
    eos = raw.get("eos_token_id", 2)
    return GlmConfig(
        vocab_size=int(raw["padded_vocab_size"]),
        hidden_size=int(raw["hidden_size"]),
        intermediate_size=int(raw["ffn_hidden_size"]),
        num_hidden_layers=int(raw["num_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=int(raw["kv_channels"]),
        partial_rotary_factor=0.5,
        rms_norm_eps=float(raw.get("layernorm_epsilon", 1e-5)),
        max_position_embeddings=int(raw.get("seq_length", 8192)),
        attention_bias=bool(raw.get("add_qkv_bias", True)),
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0 * float(raw.get("rope_ratio", 1.0)),
            "partial_rotary_factor": 0.5,
        },
        tie_word_embeddings=False,
        pad_token_id=raw.get("pad_token_id", 0),
        eos_token_id=eos,
        bos_token_id=raw.get("bos_token_id"),
    )


_LAYER = re.compile(r"transformer\.encoder\.layers\.(\d+)\.(.+)")
_RENAMES = {
    "input_layernorm.weight": "input_layernorm.weight",
    "post_attention_layernorm.weight": "post_attention_layernorm.weight",
    "self_attention.dense.weight": "self_attn.o_proj.weight",
    "mlp.dense_h_to_4h.weight": "mlp.gate_up_proj.weight",
    "mlp.dense_4h_to_h.weight": "mlp.down_proj.weight",
}
_TOP_LEVEL = {
    "transformer.embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "transformer.encoder.final_layernorm.weight": "model.norm.weight",
    "transformer.output_layer.weight": "lm_head.weight",
}


def convert_tensors(
    tensors: Iterator[tuple[str, torch.Tensor]], config: GlmConfig, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """ChatGLM parameter names and layout to GlmForCausalLM's."""
    q_size = config.num_attention_heads * config.head_dim
    kv_size = config.num_key_value_heads * config.head_dim
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors:
        if name.endswith("rotary_pos_emb.inv_freq"):
            continue  # recomputed by GlmRotaryEmbedding
        if name in _TOP_LEVEL:
            out[_TOP_LEVEL[name]] = tensor.to(dtype)
            continue
        match = _LAYER.fullmatch(name)
        if match is None:
            raise ChatGLMCheckpointError(f"unexpected tensor {name!r} in the ChatGLM checkpoint")
        layer, rest = match.groups()
        prefix = f"model.layers.{layer}."
        if rest in _RENAMES:
            out[prefix + _RENAMES[rest]] = tensor.to(dtype)
        elif rest in (
            "self_attention.query_key_value.weight",
            "self_attention.query_key_value.bias",
        ):
            kind = rest.rsplit(".", 1)[1]
            q, k, v = tensor.split([q_size, kv_size, kv_size], dim=0)
            for proj, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                out[f"{prefix}self_attn.{proj}.{kind}"] = part.to(dtype).contiguous()
        else:
            raise ChatGLMCheckpointError(f"unexpected tensor {name!r} in the ChatGLM checkpoint")
    return out


def _read_shards(
    path: Path, device: torch.device, parallel: bool
) -> Iterator[tuple[str, torch.Tensor]]:
    """On a GPU, safetensors shards are read whole in parallel straight onto it
    (weight_loading.py), one at a time: a shard's raw bytes are freed once its tensors are
    converted, so a float16 checkpoint served in bfloat16 never sits on the GPU twice. On the
    CPU safetensors' mapping is faster (as for HF directories, hf_loading.py); from a network
    filesystem the files are first read in parallel into the page cache."""
    shards = sorted(path.glob("*.safetensors"))
    if shards:
        if not parallel and on_network_filesystem(path):
            prefetch(shards)
        for shard in shards:
            try:
                tensors = load_safetensors([shard], device) if parallel else load_file(shard)
            except WeightFileError as err:
                raise ChatGLMCheckpointError(str(err)) from None
            except SafetensorError as err:
                raise ChatGLMCheckpointError(f"{shard}: {err}") from None
            yield from tensors.items()
            del tensors
        return
    shards = sorted(path.glob("pytorch_model*.bin"))
    if not shards:
        raise ChatGLMCheckpointError(f"{path} has no *.safetensors or pytorch_model*.bin weights")
    if on_network_filesystem(path):
        prefetch(shards)  # torch.load reads a file in small pieces: one round trip each
    for shard in shards:  # weights_only: a checkpoint file must not run code
        yield from torch.load(shard, map_location="cpu", weights_only=True).items()


def load_chatglm(
    path: Path, device: torch.device, dtype: torch.dtype, parallel: bool | None = None
) -> GlmForCausalLM:
    """`parallel`: read safetensors shards through weight_loading (default: on a GPU)."""
    raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    config = glm_config_from_chatglm(raw)
    config._attn_implementation = "sdpa"  # type: ignore[attr-defined]
    parallel = device.type != "cpu" if parallel is None else parallel
    state = convert_tensors(_read_shards(path, device, parallel), config, dtype)
    with torch.device("meta"):
        model = GlmForCausalLM(config)
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:
        raise ChatGLMCheckpointError(
            f"the ChatGLM checkpoint lacks {missing[:3]} ({len(missing)} tensors missing)"
        )
    model.load_state_dict(state, strict=True, assign=True)
    with torch.device(device):
        model.model.rotary_emb = GlmRotaryEmbedding(config=config)
    del state
    if device.type == "cuda":  # the raw bytes of converted shards: free for the KV buffers' sizing
        torch.cuda.empty_cache()
    return model.to(device).eval()

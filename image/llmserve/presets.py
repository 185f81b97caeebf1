"""Random-weight models for tests and benchmarks: real architectures, seeded weights, no download.

`random:chatglm2-6b` is ChatGLM2-6B's shape in transformers' native GLM architecture (the same
numbers as shared/bench/anchors_gpu.py), so engine speed can be measured without the weights."""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import GlmConfig, GlmForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel

CHATGLM2_6B_SHAPE = dict(
    vocab_size=65024,
    hidden_size=4096,
    num_hidden_layers=28,
    num_attention_heads=32,
    num_key_value_heads=2,
    intermediate_size=13696,
    head_dim=128,
    partial_rotary_factor=0.5,
    max_position_embeddings=8192,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)

# Small hidden sizes keep tests fast; a wide initializer makes logits peaked, so greedy choices
# are not near-ties that float noise could flip between batched and one-at-a-time runs.
TINY_GLM_SHAPE = dict(
    vocab_size=49152,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    head_dim=16,
    partial_rotary_factor=0.5,
    max_position_embeddings=2048,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    initializer_range=0.5,
)

TINY_LLAMA_SHAPE = dict(
    vocab_size=49152,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    max_position_embeddings=2048,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    initializer_range=0.5,
)

PRESETS: dict[str, Callable[[], tuple[type[PreTrainedModel], object]]] = {
    "tiny": lambda: (GlmForCausalLM, GlmConfig(**TINY_GLM_SHAPE)),
    "tiny-llama": lambda: (LlamaForCausalLM, LlamaConfig(**TINY_LLAMA_SHAPE)),
    "chatglm2-6b": lambda: (GlmForCausalLM, GlmConfig(**CHATGLM2_6B_SHAPE)),
}


def build_random_model(preset: str, device: torch.device, dtype: torch.dtype) -> PreTrainedModel:
    if preset not in PRESETS:
        raise ValueError(
            f"LLMSERVE_MODEL='random:{preset}' names an unknown preset; allowed: "
            + ", ".join(f"random:{p}" for p in PRESETS)
        )
    model_class, config = PRESETS[preset]()
    config._attn_implementation = "sdpa"  # type: ignore[attr-defined]
    previous_dtype = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        torch.set_default_dtype(dtype)
        try:
            with device:  # initialise on the target device: a 6B model in seconds on a GPU
                model = model_class(config)
        finally:
            torch.set_default_dtype(previous_dtype)
    return model.eval()

"""The lean Llama (cpu_llama.py) computes what transformers' LlamaForCausalLM computes, bit for
bit, for each call the engine makes: a left-padded batch prefill, batched decode steps over the
grown cache with its 2D mask, one-row steps without padding, a prompt in chunks, every
position's logits (logits_to_keep=0), and float, int8 and int4 Linears; and configs it does not
cover are refused."""

from __future__ import annotations

import pytest
import torch
from llmserve.cpu_llama import LeanLlamaForCausalLM, causal_mask, unsupported_reason
from llmserve.presets import TINY_LLAMA_SHAPE, build_random_model
from llmserve.quantization import quantize_model
from torch import nn
from transformers import DynamicCache, LlamaConfig

from tests.server.test_cpu_decode import _int4


def _pair(kind: str) -> tuple[nn.Module, LeanLlamaForCausalLM]:
    torch.manual_seed(0)
    theirs = build_random_model("tiny-llama", torch.device("cpu"), torch.float32).eval()
    if kind == "int8":
        quantize_model(theirs, "int8")
    elif kind == "int4":
        _int4(theirs)
    linears = dict(theirs.named_modules())
    mine = LeanLlamaForCausalLM(theirs.config, lambda name, _i, _o: linears[name]).eval()
    mine.model.embed_tokens = theirs.model.embed_tokens
    for a, b in zip(mine.model.layers, theirs.model.layers, strict=True):
        a.input_layernorm.weight = b.input_layernorm.weight
        a.post_attention_layernorm.weight = b.post_attention_layernorm.weight
    mine.model.norm.weight = theirs.model.norm.weight
    assert torch.equal(mine.model.rotary_emb.inv_freq, theirs.model.rotary_emb.inv_freq)
    return theirs, mine


def _run(model: nn.Module, rows: list[list[int]], steps: int, chunk: int = 0) -> list[torch.Tensor]:
    """Prefill `rows` left-padded (or the single row in chunks of `chunk`), then `steps`
    greedy decode steps of the whole batch; every call's logits."""
    longest = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), longest), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, longest - len(r) :] = torch.tensor(r)
        mask[i, longest - len(r) :] = 1
    cache = DynamicCache(config=model.config)
    out: list[torch.Tensor] = []
    with torch.inference_mode():
        if chunk:
            for start in range(0, longest, chunk):
                end = min(longest, start + chunk)
                logits = model(
                    input_ids=ids[:, start:end],
                    attention_mask=mask[:, :end],
                    position_ids=torch.arange(start, end)[None, :],
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=0,
                ).logits
                out.append(logits)
        else:
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            logits = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits
            out.append(logits)
        position = mask.sum(1, keepdim=True)
        for _ in range(steps):
            token = out[-1][:, -1].argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(token)], dim=1)
            logits = model(
                input_ids=token,
                attention_mask=mask,
                position_ids=position,
                cache=cache,
                use_cache=True,
            ).logits
            out.append(logits)
            position = position + 1
    return out


@pytest.mark.parametrize("kind", ["float", "int8", "int4"])
@pytest.mark.parametrize(
    ("rows", "chunk"),
    [
        ([[1, 17, 300, 4000, 42, 9, 1000], [5, 6, 7], [8]], 0),  # padded batch, masked steps
        ([[1, 17, 300, 4000, 42, 9, 1000]], 0),  # one row: no mask at all (sdpa is_causal)
        ([[1, 17, 300, 4000, 42, 9, 1000, 3, 77]], 4),  # chunks: a mask over the cache
    ],
)
def test_same_logits_as_transformers(kind: str, rows: list[list[int]], chunk: int) -> None:
    theirs, mine = _pair(kind)
    want = _run(theirs, rows, steps=6, chunk=chunk)
    got = _run(mine, rows, steps=6, chunk=chunk)
    assert len(want) == len(got)
    for step, (w, g) in enumerate(zip(want, got, strict=True)):
        assert w.shape == g.shape, step
        assert torch.equal(w, g), f"call {step}: max diff {(w - g).abs().max()}"


def test_the_mask_is_built_only_where_transformers_builds_one() -> None:
    ones = torch.ones((2, 5), dtype=torch.long)
    assert causal_mask(ones, 2, 5, 0) is None  # prefill, no padding: is_causal
    assert causal_mask(ones, 2, 1, 4) is None  # one-token step, no padding
    padded = ones.clone()
    padded[1, :2] = 0
    mask = causal_mask(padded, 2, 5, 0)
    assert mask is not None and mask.shape == (2, 1, 5, 5)
    assert not mask[1, 0, 4, :2].any() and mask[1, 0, 4, 2:].all()
    assert mask[0, 0].equal(torch.ones(5, 5, dtype=torch.bool).tril())
    chunk = causal_mask(ones, 2, 2, 3)  # a second chunk: attends to the 3 cached columns
    assert chunk is not None
    assert chunk[0, 0].tolist() == [[True] * 4 + [False], [True] * 5]
    four_d = torch.ones((1, 1, 1, 3), dtype=torch.bool)
    assert causal_mask(four_d, 1, 1, 2) is four_d


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (dict(hidden_act="gelu"), "hidden_act"),
        (dict(attention_bias=True), "bias"),
        (dict(mlp_bias=True), "bias"),
        (dict(rope_parameters={"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}), "rotary"),
    ],
)
def test_configs_it_does_not_cover_are_refused(change: dict, reason: str) -> None:
    config = LlamaConfig(**{**TINY_LLAMA_SHAPE, **change})
    assert reason in (unsupported_reason(config) or "")
    with pytest.raises(ValueError, match=reason):
        LeanLlamaForCausalLM(config)
    assert unsupported_reason(LlamaConfig(**TINY_LLAMA_SHAPE)) is None

"""Quality of quantized weights against bf16 and fp32, on the same random weights.

    nice -n 10 python bench/quant_quality.py --out quant_quality.json [--device cpu] \
        [--shape chatglm2-mid] [--modes int8,fp8] [--threads 2]

The model is ChatGLM2-6B's architecture (transformers' GLM, as `random:chatglm2-6b`), seeded
the same way. On the CPU the full 6.2 B-parameter shape does not fit a quick run (24 GB of fp32
plus copies), so the default `chatglm2-mid` keeps its head_dim, KV-head count, vocabulary,
partial rotary and FFN ratio and shrinks width and depth: hidden 1024, 8 heads, 8 layers, FFN
3424 (~0.24 B parameters). `--shape chatglm2-6b --device cuda` runs the real shape on a GPU.

For each mode (bf16, and int8 / fp8 quantized from that bf16 model, served as on the GPU: bf16
activations) against bf16 and against fp32 on the same weights:
- teacher-forced logits at the 256 positions after a 128-token prompt, fed bf16's own greedy
  continuation: max abs error, relative L2 error, mean KL(ref || mode) of the softmax, mean
  cosine, top-1 agreement;
- free-running greedy decoding of 256 tokens: position-wise agreement with bf16's tokens and the
  first position that differs.
Random weights give flat, near-tied logits (see `ref_top2_margin`), so free-running agreement is
a harsh measure here: one flipped near-tie changes every later token.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import GlmConfig, GlmForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "image"))

from llmserve import quantization as q
from llmserve.presets import CHATGLM2_6B_SHAPE

PROMPT, GENERATE = 128, 256
SHAPES: dict[str, dict[str, Any]] = {
    "chatglm2-6b": dict(CHATGLM2_6B_SHAPE),
    "chatglm2-mid": {
        **CHATGLM2_6B_SHAPE,
        "hidden_size": 1024,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "intermediate_size": 3424,
    },
}


def build(shape: str, device: torch.device) -> GlmForCausalLM:
    """fp32 weights, seeded as presets.build_random_model seeds them."""
    config = GlmConfig(**SHAPES[shape])
    config._attn_implementation = "sdpa"  # type: ignore[attr-defined]
    torch.manual_seed(0)
    with device:
        model = GlmForCausalLM(config)
    return model.eval()


@torch.inference_mode()
def greedy(model: Any, prompt: torch.Tensor, steps: int) -> list[int]:
    """Plain argmax decoding through the KV cache, no stop token (all `steps` are compared)."""
    out = model(input_ids=prompt, use_cache=True)
    tokens = [int(out.logits[0, -1].argmax())]
    for _ in range(steps - 1):
        step = torch.tensor([[tokens[-1]]], device=prompt.device)
        out = model(input_ids=step, past_key_values=out.past_key_values, use_cache=True)
        tokens.append(int(out.logits[0, -1].argmax()))
    return tokens


@torch.inference_mode()
def forced_logits(model: Any, sequence: torch.Tensor) -> torch.Tensor:
    """fp32 logits predicting each of the GENERATE continuation tokens."""
    return model(input_ids=sequence).logits[0, PROMPT - 1 : -1].float()


def compare(out: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    log_p, log_q = ref.log_softmax(-1), out.log_softmax(-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return {
        "max_abs": round(float((out - ref).abs().max()), 5),
        "rel_l2": round(float((out - ref).norm() / ref.norm()), 5),
        "kl_mean": float(f"{float(kl.mean()):.3g}"),
        "cosine_mean": round(float(torch.cosine_similarity(out, ref, dim=-1).mean()), 6),
        "top1_agree": round(float((out.argmax(-1) == ref.argmax(-1)).float().mean()), 4),
    }


def agreement(tokens: list[int], ref: list[int]) -> dict[str, float | int]:
    pairs = list(zip(tokens, ref, strict=True))
    first = next((i for i, (a, b) in enumerate(pairs) if a != b), len(pairs))
    return {
        "greedy_agree": round(sum(a == b for a, b in pairs) / len(pairs), 4),
        "greedy_first_diff": first,
    }


def run(shape: str, device: torch.device, modes: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.gmtime()),
        "torch": torch.__version__,
        "device": str(device),
        "shape": shape,
        "config": SHAPES[shape],
        "prompt_tokens": PROMPT,
        "generated_tokens": GENERATE,
    }
    fp32 = build(shape, device)
    results["params"] = sum(p.numel() for p in fp32.parameters())
    vocab = SHAPES[shape]["vocab_size"]
    prompt = torch.randint(10, vocab - 10, (1, PROMPT), generator=torch.Generator().manual_seed(1))
    prompt = prompt.to(device)
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    t0 = time.perf_counter()
    ref_tokens = greedy(bf16, prompt, GENERATE)
    results["bf16_greedy_s"] = round(time.perf_counter() - t0, 1)
    sequence = torch.cat([prompt, torch.tensor([ref_tokens], device=device)], dim=1)
    exact = forced_logits(fp32, sequence)
    ref = forced_logits(bf16, sequence)
    top2 = ref.topk(2, dim=-1).values
    results["ref_logit_std"] = round(float(ref.std()), 4)
    results["ref_top2_margin_median"] = round(float((top2[:, 0] - top2[:, 1]).median()), 4)
    results["fp32_greedy"] = agreement(greedy(fp32, prompt, GENERATE), ref_tokens)
    results["bf16"] = {
        "weight_bytes": q.weight_bytes(bf16),
        "vs_fp32": compare(ref, exact),
    }
    print("bf16", json.dumps(results["bf16"]), flush=True)
    del fp32
    for mode in modes:
        res: dict[str, Any] = {}
        results[mode] = res
        try:
            model = copy.deepcopy(bf16)
            res["linear_layers"] = q.quantize_model(model, mode)
            res["weight_bytes"] = q.weight_bytes(model)
            logits = forced_logits(model, sequence)
            res["vs_bf16"] = compare(logits, ref)
            res["vs_fp32"] = compare(logits, exact)
            t0 = time.perf_counter()
            res.update(agreement(greedy(model, prompt, GENERATE), ref_tokens))
            res["greedy_s"] = round(time.perf_counter() - t0, 1)
            del model
        except Exception as err:  # one mode that cannot run here must not hide the others
            res["error"] = f"{type(err).__name__}: {str(err)[:400]}"
        print(mode, json.dumps(res), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", default="chatglm2-mid", choices=tuple(SHAPES))
    parser.add_argument("--modes", default="int8,fp8")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    modes = [m for m in args.modes.split(",") if m]
    for mode in modes:
        q.check_mode(mode, torch.device(args.device))
    results = run(args.shape, torch.device(args.device), modes)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""Where a single stream's decode step spends its time on the GPU (no HTTP, no tokenizer).

    python bench/step_profile.py --out step_profile.json

Builds random:chatglm2-6b in bf16, prefills one 128-token row, then times (CUDA events, median of
many steps) GraphedDecoder.decode for one row — the graph replay plus its buffer bookkeeping —
next to the replay alone, the eager step, and the next-token pick. Variants: the model's RMSNorm
replaced by torch's fused rms_norm, and the step compiled by torch.compile before capture (shape
fixed, to see the fusion headroom). Each variant is independent; a failing one is recorded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "image"))

from llmserve.engine_api import SamplingParams
from llmserve.graphs import GraphedDecoder
from llmserve.kvcache import BatchCache
from llmserve.presets import build_random_model
from llmserve.sampling import pick_next_tokens
from transformers import DynamicCache

PROMPT = 128


def median_ms(fn, steps: int) -> float:
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return round(statistics.median(times), 3)


def fresh_batch(model) -> BatchCache:
    ids = torch.randint(10, 40000, (1, PROMPT), device="cuda")
    mask = torch.ones_like(ids)
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True, logits_to_keep=1)
    batch = BatchCache()
    batch.append(cache, mask)
    return batch


def graphed_step_ms(
    model, steps: int, fuse_norms: bool, compile_step: bool = False
) -> dict[str, float]:
    decoder = GraphedDecoder(
        model,
        max_rows=1,
        max_len=1024,
        pad_token_id=0,
        use_cuda_graphs=True,
        compile_step=compile_step,
        fuse_norms=fuse_norms,
    )
    batch = fresh_batch(model)
    out: dict[str, float] = {}
    with torch.inference_mode():
        t0 = time.perf_counter()
        decoder.decode(batch, [5], [PROMPT])
        torch.cuda.synchronize()
        out["first_step_incl_capture_s"] = round(time.perf_counter() - t0, 2)
        position = [PROMPT + 1]

        def step() -> None:
            decoder.decode(batch, [5], [position[0]])
            position[0] += 1

        out["decode_ms"] = median_ms(step, 100)
        graph, _logits = decoder._graphs[(1, 256)]
        out["replay_only_ms"] = median_ms(graph.replay, 100)
        wall = []
        for _ in range(50):
            t = time.perf_counter()
            logits = decoder.decode(batch, [5], [position[0]])
            position[0] += 1
            pick_next_tokens(
                logits, [SamplingParams(max_tokens=8, temperature=0.0)], [None], [False], [2]
            )
            wall.append((time.perf_counter() - t) * 1000)
        out["decode_and_pick_wall_ms"] = round(statistics.median(wall), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default="plain,fused_norm,compiled")
    args = parser.parse_args()
    results: dict[str, object] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    model = build_random_model("chatglm2-6b", torch.device("cuda"), torch.bfloat16)
    batch = fresh_batch(model)
    with torch.inference_mode():
        ids = torch.tensor([[5]], device="cuda")
        results["eager_step_ms"] = median_ms(
            lambda: model(
                input_ids=ids,
                position_ids=torch.tensor([[PROMPT]], device="cuda"),
                cache=batch.cache,
                use_cache=True,
            ),
            10,
        )
    for variant in args.variants.split(","):
        try:
            if variant == "plain":  # runs first: the fused variants change the model
                results[variant] = graphed_step_ms(model, 100, fuse_norms=False)
            elif variant == "fused_norm":
                results[variant] = graphed_step_ms(model, 100, fuse_norms=True)
            elif variant == "compiled":
                results[variant] = graphed_step_ms(model, 100, fuse_norms=True, compile_step=True)
        except Exception as err:  # one failing variant must not hide the others
            results[variant + "_error"] = repr(err)[:400]
        print(variant, results.get(variant, results.get(variant + "_error")), flush=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

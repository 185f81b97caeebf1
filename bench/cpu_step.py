"""One CPU decode step of the bundled SmolLM2-135M Q4_1 GGUF, variants side by side.

    PYTHONPATH=image .venv/bin/python bench/cpu_step.py --threads 1 --rounds 4

Builds the float model from the GGUF once, then an int8 copy (every Linear per-channel int8,
what cpu_weights.py cache format 1 held) and an int4 copy (the file's Q4_1 blocks, lm_head
int8: format 2), prefills one 40-token row into each and times GraphedDecoder.decode for one
row with transformers' forward and with the lean step (cpu_decode.py), interleaved over
`--rounds`. Reports the median CPU time of the step's thread (time.thread_time): on a machine
shared with other work, wall time mostly measures the neighbours; CPU time measures the work
(memory stalls included), so compare it between variants with one thread.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "image"))

from llmserve.gguf_q4 import swap_q4_1_linears
from llmserve.graphs import GraphedDecoder
from llmserve.kvcache import BatchCache
from llmserve.models import bundled_smollm2_gguf
from llmserve.quantization import Int8WeightOnlyLinear, quantize_model
from transformers import AutoModelForCausalLM, DynamicCache

PROMPT = 40


def bf16_scales(model: torch.nn.Module) -> torch.nn.Module:
    for module in model.modules():
        if isinstance(module, Int8WeightOnlyLinear):
            module.use_bf16_on_cpu()
    return model


def prefilled(model: torch.nn.Module) -> tuple[BatchCache, int]:
    ids = torch.randint(10, 40000, (1, PROMPT), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True)
    batch = BatchCache()
    batch.append(cache, mask)
    return batch, int(out.logits[0, -1].argmax())


def step_cpu_ms(decoder: GraphedDecoder, model: torch.nn.Module, steps: int) -> list[float]:
    batch, token = prefilled(model)
    times = []
    with torch.inference_mode():
        for i in range(steps):
            start = time.thread_time()
            logits = decoder.decode(batch, [token], [PROMPT + i])
            times.append((time.thread_time() - start) * 1000)
            token = int(logits[0].argmax())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gguf = bundled_smollm2_gguf()
    float_model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, attn_implementation="sdpa"
    ).eval()
    int8 = copy.deepcopy(float_model)
    quantize_model(int8, "int8")
    int4 = float_model
    swap_q4_1_linears(int4, gguf)
    quantize_model(int4, "int8")
    models = {"int8": bf16_scales(int8), "int4": bf16_scales(int4)}
    decoders = {
        (kind, lean): GraphedDecoder(
            model,
            max_rows=1,
            max_len=2048,
            pad_token_id=0,
            use_cuda_graphs=False,
            lean_cpu_step=lean,
        )
        for kind, model in models.items()
        for lean in (False, True)
    }
    times: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for (kind, lean), decoder in decoders.items():
            name = f"{kind}_{'lean' if lean else 'forward'}"
            times.setdefault(name, []).extend(step_cpu_ms(decoder, models[kind], args.steps))
    result = {
        "torch": torch.__version__,
        "threads": args.threads,
        "step_cpu_ms_median": {k: round(statistics.median(v), 2) for k, v in times.items()},
        "step_cpu_ms_min": {k: round(min(v), 2) for k, v in times.items()},
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

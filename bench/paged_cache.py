"""The padded and the paged KV cache side by side, in-process (no HTTP), on one machine.

    python bench/paged_cache.py [--model random:tiny|bundled] [--device cpu] [--rounds 3]

For each round, both engines (built once each, same model) run the same loads one after the
other (A, B, A, B...): `one-stream` (one request of P random prompt tokens, O greedy output
tokens: local mode), `concurrent` (N such requests at once) and `shared-prefix` (N requests that
share a system prompt of S tokens, each with its own short question; the paged engine's prefix
cache serves the shared blocks, the system prompt is sent once before timing). It records output
tokens/s per load and engine (the median over rounds, and every round), and the paged engine's
prefix-cache hit rate and preemptions. Numbers are only comparable within one run: the
machine's other load moves them. On a GPU, pass --device cuda and a model such as
random:chatglm2-6b (the padded engine then uses CUDA graphs, as `llmserve serve` does)."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "image"))


def build_engine(loaded: Any, kv_cache: str, args: argparse.Namespace) -> Any:
    from llmserve.engine import ContinuousBatchingEngine
    from llmserve.server import CPU_FIXED_ROWS, _has_int8

    on_cuda = loaded.device.type == "cuda"
    # As `llmserve serve` builds it: CUDA graphs on a GPU, one-row fixed buffers for int8 CPU
    # weights (both only over the padded cache).
    fixed_rows = args.concurrency if on_cuda else CPU_FIXED_ROWS if _has_int8(loaded.model) else 0
    engine = ContinuousBatchingEngine(
        loaded.model,
        loaded.tokenizer,
        max_model_len=args.max_model_len,
        eos_token_ids=[],
        max_batch=args.concurrency,
        graph_max_batch=fixed_rows,
        cuda_graphs=on_cuda and kv_cache == "padded",
        kv_cache=kv_cache,
        kv_block_size=args.block_size,
    )
    engine.start()
    return engine


async def run_load(engine: Any, prompts: list[list[int]], output_tokens: int) -> float:
    from llmserve.engine_api import SamplingParams

    params = SamplingParams(max_tokens=output_tokens, temperature=0.0, ignore_eos=True)

    async def one(prompt: list[int]) -> int:
        return sum([len(d.token_ids) async for d in engine.submit(prompt, params)])

    start = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(p) for p in prompts)))
    return tokens / (time.perf_counter() - start)


def random_tokens(rng: random.Random, vocab: int, n: int) -> list[int]:
    return [rng.randrange(3, vocab) for _ in range(n)]


def loads(
    args: argparse.Namespace, vocab: int, system: list[int], round_: int
) -> dict[str, list[list[int]]]:
    """Fresh prompts every round (so no round finds the last one's in the prefix cache), and
    one system prompt for all (as a deployment's: cached once, shared from then on)."""
    rng = random.Random(round_ + 1)
    return {
        "one-stream": [random_tokens(rng, vocab, args.prompt_tokens)],
        "concurrent": [
            random_tokens(rng, vocab, args.prompt_tokens) for _ in range(args.concurrency)
        ],
        "shared-prefix": [system + random_tokens(rng, vocab, 16) for _ in range(args.concurrency)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:tiny", help="'bundled': the bundled SmolLM2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--shared-tokens", type=int, default=256)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--modes",
        default="padded,paged",
        help="caches to build (on a GPU run one per process: each sizes itself from free memory)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch
    from llmserve.models import load_model

    loaded = load_model(None if args.model == "bundled" else args.model, args.device, args.dtype)
    vocab = int(loaded.model.get_input_embeddings().num_embeddings)
    engines = {mode: build_engine(loaded, mode, args) for mode in args.modes.split(",")}
    system = random_tokens(random.Random(0), vocab, args.shared_tokens)
    rates: dict[str, dict[str, list[float]]] = {
        n: {m: [] for m in engines} for n in ("one-stream", "concurrent", "shared-prefix")
    }
    with torch.inference_mode():
        for engine in engines.values():  # the system prompt, once, before anything is timed
            asyncio.run(run_load(engine, [[*system, 7]], 2))
        for round_ in range(args.rounds):
            for name, prompts in loads(args, vocab, system, round_).items():
                for mode, engine in engines.items():
                    rate = asyncio.run(run_load(engine, prompts, args.output_tokens))
                    rates[name][mode].append(round(rate, 1))
    paged = engines["paged"].stats() if "paged" in engines else None
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "args": {k: str(v) for k, v in vars(args).items()},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "output_tok_s_median": {
            name: {mode: round(statistics.median(r), 1) for mode, r in by_mode.items()}
            for name, by_mode in rates.items()
        },
        "output_tok_s_rounds": rates,
        "paged_prefix_hit_rate": round(paged.prefix_cache_hits / paged.prefix_cache_queries, 3)
        if paged and paged.prefix_cache_queries
        else None,
        "paged_preemptions": paged.preemptions if paged else None,
        "paged_capacity_tokens": paged.cache_capacity_tokens if paged else None,
    }
    for engine in engines.values():
        engine.stop()
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

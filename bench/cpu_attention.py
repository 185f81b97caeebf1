"""One decode query's attention on the CPU, two ways of calling sdpa over grouped KV heads.

    PYTHONPATH=image .venv/bin/python bench/cpu_attention.py --threads 2

SmolLM2-135M's shape (9 query heads over 3 KV heads, head dim 64): the query as [1, 3, 3, 64]
(the groups folded into the query length, what cpu_decode.py did first) against [1, 9, 1, 64]
with enable_gqa (what it does now), at several key counts. Prints the median microseconds of
each, and the largest difference between their outputs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.nn import functional as F

HEADS, KV_HEADS, DIM = 9, 3, 64


def median_us(fn, runs: int = 300) -> float:  # type: ignore[no-untyped-def]
    for _ in range(20):
        fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keys", default="128,640,1500")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(1, HEADS, 1, DIM, generator=generator)
    keys = torch.randn(1, KV_HEADS, 2048, DIM, generator=generator)
    values = torch.randn(1, KV_HEADS, 2048, DIM, generator=generator)
    folded = query.view(1, KV_HEADS, HEADS // KV_HEADS, DIM)
    result = {}
    with torch.inference_mode():
        for n in (int(k) for k in args.keys.split(",")):
            k, v = keys[:, :, :n], values[:, :, :n]
            by_groups = F.scaled_dot_product_attention(folded, k, v, scale=DIM**-0.5)
            by_gqa = F.scaled_dot_product_attention(query, k, v, scale=DIM**-0.5, enable_gqa=True)
            result[n] = {
                "groups_in_query_us": median_us(
                    lambda k=k, v=v: F.scaled_dot_product_attention(folded, k, v, scale=DIM**-0.5)
                ),
                "enable_gqa_us": median_us(
                    lambda k=k, v=v: F.scaled_dot_product_attention(
                        query, k, v, scale=DIM**-0.5, enable_gqa=True
                    )
                ),
                "max_abs_diff": (by_groups.reshape(-1) - by_gqa.reshape(-1)).abs().max().item(),
            }
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "keys": result}))


if __name__ == "__main__":
    main()

"""Tensor-parallel scenarios run as their own processes (torch.distributed's state is per
process, and a dying rank must not take pytest with it): `python -m tests.server.tp_ranks MODE`
from the repository root, with a JSON result on stdout. test_tensor_parallel.py runs them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from llmserve.engine_api import SamplingParams
from llmserve.presets import build_random_model
from llmserve.server import build_backend
from llmserve.settings import Settings
from llmserve.tensor_parallel import shard_model

PRESETS = ("tiny", "tiny-llama")
# Prompts of different lengths (left padding in one prefill), one longer than a CPU step's token
# budget (LLMSERVE's 512: a chunked prefill), and different lengths of output (leaves); with two
# batch slots the later ones join as earlier ones leave.
PROMPTS = [[1, 50 + i, 300 + 7 * i, 9, *range(100, 100 + 3 * i)] for i in range(5)]
PROMPTS.append([1, *range(2000, 2600)])
MAX_TOKENS = [6, 12, 3, 9, 15, 5]


def logit_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(3, 40000, (2, 9), generator=torch.Generator().manual_seed(7))
    return ids[:, :8], ids[:, 8:]


def logits_of(model: Any) -> list[torch.Tensor]:
    """A prefill of two rows, then one decode step on its cache: both paths of the runner."""
    prompt, step = logit_inputs()
    with torch.inference_mode():
        first = model(input_ids=prompt, use_cache=True)
        second = model(input_ids=step, past_key_values=first.past_key_values, use_cache=True)
    return [first.logits.float(), second.logits.float()]


def _logits_rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    result = {}
    for preset in PRESETS:
        model = build_random_model(preset, torch.device("cpu"), torch.float32)
        model = shard_model(model, world, torch.device("cpu"))
        result[preset] = logits_of(model)
    if rank == 0:
        torch.save(result, out)
    dist.destroy_process_group()


def sharded_logits(out: str, port: int) -> None:
    mp.spawn(_logits_rank, args=(2, port, out), nprocs=2)


def tp_settings(size: int) -> Settings:
    return Settings(model="random:tiny", device="cpu", tensor_parallel=size, max_batch=2)


async def _generate(backend: Any) -> list[list[int]]:
    async def one(prompt: list[int], max_tokens: int) -> list[int]:
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
        return [t async for d in backend.engine.submit(prompt, params) for t in d.token_ids]

    return list(await asyncio.gather(*map(one, PROMPTS, MAX_TOKENS)))


def engine_tokens(size: int) -> list[list[int]]:
    backend = build_backend(tp_settings(size))
    try:
        return asyncio.run(_generate(backend))
    finally:
        backend.engine.stop()


def crash_worker() -> None:
    """Kills rank 1, then asks for a generation: rank 0 must exit with the reason, not hang and
    not answer (an answer would be printed and the test fails on it)."""
    from llmserve import tensor_parallel

    launched: list[Any] = []
    real_launch = tensor_parallel.launch
    tensor_parallel.launch = lambda s: launched.append(real_launch(s)) or launched[0]
    backend = build_backend(tp_settings(2))
    worker = launched[0].workers[0]
    os.kill(worker.pid, signal.SIGKILL)
    print(json.dumps({"answered": asyncio.run(_generate(backend))}))


def main() -> None:
    mode = sys.argv[1]
    if mode == "logits":
        sharded_logits(sys.argv[2], int(sys.argv[3]))
    elif mode == "engine":
        print(json.dumps(engine_tokens(int(sys.argv[2]))))
    elif mode == "crash":
        crash_worker()
    else:
        raise SystemExit(f"unknown mode {mode!r}; allowed: logits, engine, crash")


if __name__ == "__main__":
    main()

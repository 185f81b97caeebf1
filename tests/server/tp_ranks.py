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
from llmserve.presets import build_random_model
from llmserve.tensor_parallel import shard_model

# The server's modules (the app, uvicorn...) are imported only by the engine scenarios: the
# logits ranks are spawned processes that import this module, and need none of them.

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
        second = model(input_ids=step, cache=first.cache, use_cache=True)
    return [first.logits.float(), second.logits.float()]


def _logits_rank(rank: int, world: int, port: int, out: str) -> None:
    """One rank of the sharded model (rank 0 saves the logits)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    result = {}
    for preset in PRESETS:
        model = build_random_model(preset, torch.device("cpu"), torch.float32)
        model = shard_model(model, world, torch.device("cpu"))
        result[preset] = logits_of(model)
    if rank == 0:
        torch.save(result, out)
    # Both ranks leave together: a rank tearing gloo down while its peer still works ended the
    # peer with std::terminate ("terminate called without an active exception", seen in CI).
    dist.barrier()
    dist.destroy_process_group()


def sharded_logits(out: str, port: int) -> None:
    """This process is rank 0; rank 1 is spawned (one import of torch fewer than mp.spawn)."""
    other = mp.get_context("spawn").Process(target=_logits_rank, args=(1, 2, port, out))
    other.start()
    _logits_rank(0, 2, port, out)
    other.join()
    if other.exitcode != 0:
        raise SystemExit(f"rank 1 exited with code {other.exitcode}")


def build(size: int) -> Any:
    from llmserve.server import build_backend
    from llmserve.settings import Settings

    return build_backend(
        Settings(model="random:tiny", device="cpu", tensor_parallel=size, max_batch=2)
    )


async def _generate(backend: Any) -> list[list[int]]:
    from llmserve.engine_api import SamplingParams

    async def one(prompt: list[int], max_tokens: int) -> list[int]:
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
        return [t async for d in backend.engine.submit(prompt, params) for t in d.token_ids]

    return list(await asyncio.gather(*map(one, PROMPTS, MAX_TOKENS)))


def engine_tokens(size: int) -> list[list[int]]:
    backend = build(size)
    try:
        return asyncio.run(_generate(backend))
    finally:
        backend.engine.stop()


def engine_then_crash() -> None:
    """The scenario's tokens at TP=2 (one JSON line), then rank 1 is killed and a generation is
    asked for: rank 0 must exit with the reason, neither hang nor answer (an answer would be
    printed, and the test fails on it). One process for both: a TP start is the slow part."""
    from llmserve import tensor_parallel

    launched: list[Any] = []
    real_launch = tensor_parallel.launch
    tensor_parallel.launch = lambda s: launched.append(real_launch(s)) or launched[0]
    backend = build(2)
    print(json.dumps(asyncio.run(_generate(backend))), flush=True)
    os.kill(launched[0].workers[0].pid, signal.SIGKILL)
    print(json.dumps({"answered": asyncio.run(_generate(backend))}), flush=True)


def main() -> None:
    mode = sys.argv[1]
    if mode == "logits":
        sharded_logits(sys.argv[2], int(sys.argv[3]))
    elif mode == "engine-then-crash":
        engine_then_crash()
    else:
        raise SystemExit(f"unknown mode {mode!r}; allowed: logits, engine-then-crash")


if __name__ == "__main__":
    main()

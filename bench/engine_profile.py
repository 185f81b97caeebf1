"""Where the in-process engine's step time goes on the GPU: host phases against GPU time.

    python3 bench/engine_profile.py --out engine_profile.json [--loads 1:2:256,256:256:256]

Builds the engine as `llmserve serve` does (`build_backend` from LLMSERVE_* settings; defaults
below: random:chatglm2-6b, bf16, 256 rows), then for each load CONCURRENCY:REQUESTS:OUTPUT_TOKENS
(128-token prompts, greedy, ignore_eos) submits the requests straight to the engine on one event
loop (no HTTP) and records:
- output tok/s in-process (the ceiling the served figure is compared with);
- wall time per call of each engine phase (scheduler, prefill, decode's host part, the graph
  replay, the next-token pick with its device sync, the output stage, retiring rows), summed
  over the load and per decode step;
- the GPU time of each graph replay (CUDA events), by batch rows, so host time that the GPU
  waits on shows as the difference between a step's wall time and its replay.
With --torch-profile, one more short load at the largest concurrency runs under torch.profiler
and the top kernels and host ops are written beside --out (text tables).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "image"))

DEFAULTS = {
    "LLMSERVE_MODEL": "random:chatglm2-6b",
    "LLMSERVE_DEVICE": "cuda",
    "LLMSERVE_DTYPE": "bfloat16",
    "LLMSERVE_MAX_BATCH": "256",
    "LLMSERVE_MAX_QUEUE": "1024",
}


class PhaseTimer:
    """Wall time per call of wrapped methods, keyed by phase name."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = collections.defaultdict(list)
        self.replays: list[tuple[int, Any, Any]] = []  # (rows, start event, end event)

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.calls[name].append(time.perf_counter() - t0)

        setattr(owner, attr, timed)

    def wrap_replay(self, graphed: Any) -> None:
        import torch

        original = graphed._run

        def timed_run(rows: int, length: int) -> Any:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            out = original(rows, length)
            end.record()
            self.replays.append((rows, start, end))
            return out

        graphed._run = timed_run

    def reset(self) -> None:
        self.calls.clear()
        self.replays.clear()

    def report(self, steps: int) -> dict[str, Any]:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        phases = {
            name: {
                "calls": len(times),
                "total_s": round(sum(times), 3),
                "median_ms": round(statistics.median(times) * 1000, 3),
                "per_decode_step_ms": round(sum(times) * 1000 / max(steps, 1), 3),
            }
            for name, times in sorted(self.calls.items())
        }
        by_rows: dict[int, list[float]] = collections.defaultdict(list)
        for rows, start, end in self.replays:
            by_rows[rows].append(start.elapsed_time(end))
        replay = {
            str(rows): {"steps": len(ms), "median_ms": round(statistics.median(ms), 3)}
            for rows, ms in sorted(by_rows.items())
        }
        total_replay_ms = sum(sum(ms) for ms in by_rows.values())
        return {
            "phases": phases,
            "replay_gpu_ms_by_rows": replay,
            "replay_gpu_total_s": round(total_replay_ms / 1000, 3),
        }


def watch_syncs(seen: collections.Counter[str]) -> None:
    import traceback
    import warnings

    import torch

    def record(message: Any, category: Any, filename: str, lineno: int, *rest: Any) -> None:
        frames = [f for f in traceback.extract_stack() if "llmserve" in f.filename]
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames[-4:]))
        seen[f"{str(message)[:60]} @ {where}"] += 1

    warnings.showwarning = record
    warnings.simplefilter("always")
    torch.cuda.set_sync_debug_mode("warn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--loads", default="1:2:256,256:256:256")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--torch-profile", action="store_true")
    parser.add_argument(
        "--sync-debug",
        action="store_true",
        help="count the operations that make the host wait for the GPU during each recorded "
        "load (torch.cuda.set_sync_debug_mode), by where in llmserve they were called",
    )
    args = parser.parse_args()
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)

    import torch
    from llmserve.engine_api import SamplingParams
    from llmserve.server import build_backend
    from llmserve.settings import load_settings

    t0 = time.perf_counter()
    backend = build_backend(load_settings(None))
    engine = backend.engine
    results: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "torch": torch.__version__,
        "settings": {k: os.environ[k] for k in sorted(os.environ) if k.startswith("LLMSERVE_")},
        "ready_s": round(time.perf_counter() - t0, 1),
        "loads": {},
    }
    print("ready in", results["ready_s"], "s", flush=True)
    timer = PhaseTimer()
    runner = engine.runner
    timer.wrap(engine.scheduler, "schedule", "scheduler.schedule")
    timer.wrap(engine.scheduler, "retire_finished", "scheduler.retire_finished")
    timer.wrap(runner, "prefill", "runner.prefill")
    timer.wrap(runner, "prefill_chunk", "runner.prefill_chunk")
    timer.wrap(runner, "decode", "runner.decode (all)")
    timer.wrap(runner, "_pick", "runner._pick (sync)")
    timer.wrap(runner, "keep_rows", "runner.keep_rows")
    if hasattr(runner, "launch_decode"):  # overlapped steps (LLMSERVE_OVERLAP_STEPS)
        timer.wrap(runner, "launch_decode", "runner.launch_decode (no sync)")
        timer.wrap(engine, "_settle", "engine._settle (read back + output)")
    timer.wrap(engine.output, "accept", "output.accept")
    timer.wrap(engine.output, "flush", "output.flush")
    graphed = getattr(runner, "graphed", None)
    if graphed is not None:
        timer.wrap(graphed, "decode", "graphed.decode (host + launch)")
        timer.wrap(graphed, "_adopt", "graphed._adopt (row copies)")
        if graphed.use_cuda_graphs:
            timer.wrap_replay(graphed)
    vocab = min(backend.vocab_size, len(backend.tokenizer))

    def prompt(i: int) -> list[int]:
        return [10 + (i * 7919 + j * 104729) % (vocab - 10) for j in range(args.prompt_tokens)]

    async def load(concurrency: int, requests: int, output_tokens: int) -> dict[str, float]:
        params = SamplingParams(
            max_tokens=output_tokens, temperature=0.0, ignore_eos=True, min_tokens=output_tokens
        )  # what `llmserve bench --ignore-eos` sends
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> int:
            async with gate:
                tokens = 0
                async for delta in engine.submit(prompt(i), params):
                    tokens = delta.completion_tokens
                return tokens

        t = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one(i) for i in range(requests))))
        wall = time.perf_counter() - t
        return {"tokens": tokens, "wall_s": round(wall, 3), "tok_s": round(tokens / wall, 1)}

    async def check() -> list[list[int]]:
        """Greedy answers of 8 requests that leave at different steps (compare across runs).
        All are queued before the engine's next step (its lock held), so every run admits them
        in the same step and batches the same rows."""
        streams = []
        with engine._wake:
            for i in range(8):
                params = SamplingParams(max_tokens=16 + 9 * i, temperature=0.0, ignore_eos=True)
                streams.append(engine.submit(prompt(i), params))

        async def read(stream: Any) -> list[int]:
            return [t async for d in stream for t in d.token_ids]

        return list(await asyncio.gather(*(read(s) for s in streams)))

    results["check_tokens"] = asyncio.run(check())
    for spec in args.loads.split(","):
        concurrency, requests, output_tokens = (int(x) for x in spec.split(":"))
        asyncio.run(load(concurrency, min(requests, concurrency), 16))  # shapes warm, unrecorded
        timer.reset()
        syncs: collections.Counter[str] = collections.Counter()
        if args.sync_debug:
            watch_syncs(syncs)
        outcome = asyncio.run(load(concurrency, requests, output_tokens))
        if args.sync_debug:
            torch.cuda.set_sync_debug_mode(0)
            outcome["syncs"] = syncs.most_common(15)
        steps = len(timer.calls.get("runner.decode (all)", [])) + len(
            timer.calls.get("runner.launch_decode (no sync)", [])
        )
        outcome.update(timer.report(steps))
        outcome["decode_steps"] = steps
        results["loads"][spec] = outcome
        print(spec, json.dumps(outcome, indent=1), flush=True)
        args.out.write_text(json.dumps(results, indent=1))

    if args.torch_profile:
        from torch.profiler import ProfilerActivity, profile

        concurrency = max(int(s.split(":")[0]) for s in args.loads.split(","))
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            asyncio.run(load(concurrency, concurrency, 32))
        table = prof.key_averages()
        stem = args.out.with_suffix("")
        Path(f"{stem}_cuda.txt").write_text(
            table.table(sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=70)
        )
        Path(f"{stem}_cpu.txt").write_text(
            table.table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=70)
        )
    engine.stop()


if __name__ == "__main__":
    main()

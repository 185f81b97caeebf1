"""The CPU decode step's wall time under OpenMP wait policies, idle and beside other work.

    PYTHONPATH=image .venv/bin/python bench/cpu_threads.py --steps 60

Why: OpenMP threads that sleep as soon as they are idle (OMP_WAIT_POLICY=PASSIVE) must be woken
for each of the ~150 parallel regions of a decode step, and threads that spin keep a core busy
that other work may want. Which costs more depends on the machine and on what else runs, so
this measures it: for each policy (libgomp's default: spin a while, then sleep; PASSIVE; one
thread) and each neighbourhood (idle; two busy processes; a second copy of the same step
process), a fresh process (libgomp reads its environment when torch loads) builds the bundled
model from the CPU weight cache and times the lean one-row step (cpu_decode.py) with
time.perf_counter. Prints one JSON object: median and minimum ms per step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICIES = {
    "default (spin, then sleep)": {"threads": "2", "env": {}},
    "PASSIVE": {"threads": "2", "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    "one thread, PASSIVE": {"threads": "1", "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
}
NEIGHBOURS = ("idle", "two busy processes", "a second step process")
BUSY = [sys.executable, "-c", "while True: pass"]


def child(threads: int, steps: int) -> None:
    """Runs in the measured process: prints [median, min] ms per step."""
    import torch

    sys.path.insert(0, str(ROOT / "image"))
    from llmserve.cpu_decode import LlamaCpuStep
    from llmserve.models import load_model

    torch.set_num_threads(threads)
    model = load_model(None).model
    config = model.config
    step = LlamaCpuStep(model, 2048)
    shape = (1, config.num_key_value_heads, 2048, step.head_dim)
    keys = [torch.zeros(shape) for _ in range(config.num_hidden_layers)]
    values = [torch.zeros(shape) for _ in range(config.num_hidden_layers)]
    mask = torch.ones(100, dtype=torch.bool)
    times = []
    with torch.inference_mode():
        for i in range(steps + 5):
            started = time.perf_counter()
            step(5 + i, 99, keys, values, 99, mask)
            times.append((time.perf_counter() - started) * 1000)
    print(json.dumps([statistics.median(times[5:]), min(times[5:])]))


def measure(policy: dict[str, object], neighbour: str, steps: int) -> list[float]:
    env = {**os.environ, **policy["env"]}  # type: ignore[dict-item]
    argv = [sys.executable, __file__, "--child", str(policy["threads"]), "--steps", str(steps)]
    others: list[subprocess.Popen[bytes]] = []
    if neighbour == "two busy processes":
        others = [subprocess.Popen(BUSY) for _ in range(2)]
    elif neighbour == "a second step process":
        others = [
            subprocess.Popen([*argv[:-1], str(steps * 50)], env=env, stdout=subprocess.DEVNULL)
        ]
        time.sleep(4)  # past its model load, into its steps
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    finally:
        for other in others:
            other.kill()
            other.wait()
    return [round(v, 2) for v in json.loads(done.stdout.strip().splitlines()[-1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.steps)
        return
    results = {
        neighbour: {
            name: measure(policy, neighbour, args.steps) for name, policy in POLICIES.items()
        }
        for neighbour in NEIGHBOURS
    }
    print(json.dumps({"ms_per_step_median_min": results}, indent=1))


if __name__ == "__main__":
    main()

"""Cold load of ~12 GB of safetensors from local disk to the GPU: llmserve's loader vs safetensors'.

    python bench/gpu_cold_load.py --dir /tmp/coldload --out cold_load.json [--gb 12]

Writes shards of random bf16 tensors of ChatGLM2-6B's layer shapes (about --gb GB in all, 6
shards), then for each loader evicts the files from the page cache (fsync +
posix_fadvise(DONTNEED), checked through /proc/meminfo's Cached) and times the files' arrival on
the GPU (to a synchronized device). Also times a plain parallel read (no GPU), and both loaders
with the files already in the page cache. Every loaded tensor is compared with safetensors'.
The disk is the device machine's virtual disk: its host may cache what the guest evicted, so the
"cold" figures are an upper bound on the speed of a truly cold local disk.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "image"))

from llmserve.weight_loading import load_safetensors, prefetch

SHAPES = [
    (27392, 4096),
    (4096, 13696),
    (4096, 4096),
    (256, 4096),
    (256, 4096),
    (4096, 4096),
    (4096,),
    (256,),
]  # one GLM layer: gate_up, down, q, k, v, o, norm, k bias


def cached_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Cached:"):
            return round(int(line.split()[1]) * 1024 / 1e9, 2)
    return -1.0


def evict(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def write_shards(directory: Path, total_gb: float, shards: int = 6) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    per_layer = sum(torch.Size(s).numel() * 2 for s in SHAPES)
    layers = max(1, round(total_gb * 1e9 / per_layer))
    paths = []
    for shard in range(shards):
        tensors = {}
        for layer in range(shard * layers // shards, (shard + 1) * layers // shards):
            for j, shape in enumerate(SHAPES):
                tensors[f"model.layers.{layer}.t{j}"] = torch.randn(
                    shape, device="cuda", dtype=torch.bfloat16
                ).cpu()
        path = directory / f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        save_file(tensors, str(path))
        paths.append(path)
    return paths


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    value = fn()
    torch.cuda.synchronize()
    return value, time.perf_counter() - t0


def safetensors_default(paths: list[Path]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for path in paths:
        out.update(load_file(str(path), device="cuda:0"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--gb", type=float, default=12.0)
    parser.add_argument(
        "--configs",
        default="8:64,16:32",
        help="threads:chunk_MiB settings of our loader to time cold",
    )
    args = parser.parse_args()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "cpus": os.cpu_count(),
    }

    def save() -> None:
        args.out.write_text(json.dumps(results, indent=1))
        print(json.dumps(results), flush=True)

    paths, seconds = timed(lambda: write_shards(args.dir, args.gb))
    size = sum(p.stat().st_size for p in paths)
    results.update(files=len(paths), bytes=size, write_s=round(seconds, 1))
    save()
    gb = size / 1e9

    def run(label: str, fn: Callable[[], Any], cold: bool) -> Any:
        if cold:
            evict(paths)
            results[label + "_cached_gb_before"] = cached_gb()
        value, seconds = timed(fn)
        results[label + "_s"] = round(seconds, 2)
        results[label + "_GBps"] = round(gb / seconds, 2)
        save()
        return value

    run(
        "plain_parallel_read_cold",
        lambda: prefetch(paths, threads=16, chunk_bytes=32 << 20),
        cold=True,
    )
    reference = run("safetensors_load_file_cold", lambda: safetensors_default(paths), cold=True)
    for config in args.configs.split(","):
        threads, chunk = (int(v) for v in config.split(":"))
        label = f"llmserve_t{threads}_c{chunk}MiB_cold"
        ours = run(
            label,
            lambda t=threads, c=chunk: load_safetensors(
                paths, "cuda:0", threads=t, chunk_bytes=c << 20
            ),
            cold=True,
        )
        results[label + "_equal"] = set(ours) == set(reference) and all(
            torch.equal(ours[k], reference[k]) for k in ours
        )
        del ours
        torch.cuda.empty_cache()
        save()
    del reference
    torch.cuda.empty_cache()
    run("safetensors_load_file_warm", lambda: safetensors_default(paths), cold=False)
    torch.cuda.empty_cache()
    run("llmserve_t8_c64MiB_warm", lambda: load_safetensors(paths, "cuda:0"), cold=False)
    for path in paths:
        path.unlink()


if __name__ == "__main__":
    main()

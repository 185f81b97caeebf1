"""Cold load of ~12 GB of safetensors from local disk to the GPU: the loader models.py now uses
for Hugging Face directories, against the one it replaced; and the raw file loaders.

    python bench/gpu_cold_load.py --dir /tmp/coldload --out cold_load.json [--gb 12]
        [--phases wired,raw] [--device cuda:0] [--drop-caches]

`wired` (first, the figure of issue 15's target): saves a random ChatGLM2-6B-shaped
GlmForCausalLM (layers scaled to about --gb GB of bf16) with save_pretrained, then times, each
with the files dropped from the page cache and each with them cached:
  hf_loading.load_hf_directory (what load_model runs: meta model, parallel pinned reads onto the
    GPU, assign) to a synchronized device;
  from_pretrained on the CPU then .to(device) (what load_model ran before);
and checks both give the same tensors.
`raw`: writes shards of random bf16 tensors of ChatGLM2-6B's layer shapes (6 shards), then times
weight_loading.load_safetensors against safetensors' load_file, and a plain parallel read.

Dropping the page cache: fsync + posix_fadvise(DONTNEED) per file, or with --drop-caches (on
the dedicated device machine) `sync` + /proc/sys/vm/drop_caches where writable; /proc/meminfo's
Cached is recorded before each cold run, and which method was used. The disk is the device
machine's virtual disk: its host may cache what the guest dropped, so the "cold" figures are an
upper bound on the speed of a truly cold local disk. NFS (UFS) is not measured: the device has
no NFS mount.

One GPU call (about 12.5 GB written twice, ~10 loads; fits the 10-minute limit on the H200):
    python3 bench/gpu_cold_load.py --dir /tmp/coldload --out $OUT/cold_load.json --drop-caches
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
from transformers import AutoModelForCausalLM, GlmConfig, GlmForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "image"))

from llmserve.hf_loading import load_hf_directory, safetensors_files
from llmserve.presets import CHATGLM2_6B_SHAPE
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


DROP_ALL = {"on": False}  # --drop-caches: the whole machine's page cache (a dedicated machine)


def drop_page_cache(paths: list[Path]) -> str:
    """These files' pages; with --drop-caches the whole page cache where the kernel lets us
    (root on the device machine: never on a machine others share). Says which was done."""
    os.sync()
    if DROP_ALL["on"]:
        try:
            Path("/proc/sys/vm/drop_caches").write_text("1\n")
            return "drop_caches"
        except OSError:
            pass
    evict(paths)
    return "fadvise"


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


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    sync()
    t0 = time.perf_counter()
    value = fn()
    sync()
    return value, time.perf_counter() - t0


def save_hf_model(directory: Path, total_gb: float, device: torch.device) -> list[Path]:
    """ChatGLM2-6B's shape (12.5 GB of bf16 in 28 layers), layers scaled to about total_gb."""
    shape = dict(CHATGLM2_6B_SHAPE)
    shape["num_hidden_layers"] = max(1, round(28 * total_gb / 12.5))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with device:
            model = GlmForCausalLM(GlmConfig(**shape))
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(directory, max_shard_size="2GB")
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return safetensors_files(directory) or []


def same_tensors(a: Any, b: Any) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(
        sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa
    )


def wired_phase(
    directory: Path, total_gb: float, device: torch.device, results: dict[str, Any], save: Any
) -> None:
    paths, seconds = timed(lambda: save_hf_model(directory, total_gb, device))
    size = sum(p.stat().st_size for p in paths)
    results.update(wired_files=len(paths), wired_bytes=size, wired_write_s=round(seconds, 1))
    save()

    def today() -> Any:
        model = AutoModelForCausalLM.from_pretrained(
            directory, dtype=torch.bfloat16, attn_implementation="sdpa"
        )
        return model.to(device).eval()

    def wired() -> Any:
        return load_hf_directory(directory, device, torch.bfloat16)

    reference = None
    for label, load in (
        ("wired_load_hf_directory", wired),
        ("wired_from_pretrained_then_to", today),
    ):
        for cold in (True, False):
            key = f"{label}_{'cold' if cold else 'warm'}"
            if cold:
                results[key + "_drop"] = drop_page_cache(paths)
                results[key + "_cached_gb_before"] = cached_gb()
            model, seconds = timed(load)
            results[key + "_s"] = round(seconds, 2)
            results[key + "_GBps"] = round(size / 1e9 / seconds, 2)
            if reference is None:
                reference = model
            else:
                results[key + "_equal_to_wired"] = same_tensors(reference, model)
                del model
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            save()
    del reference
    for path in directory.iterdir():
        path.unlink()


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
    parser.add_argument("--phases", default="wired,raw", help="wired and/or raw, in order")
    parser.add_argument("--device", default="cuda:0", help="cpu only to try the script")
    parser.add_argument(
        "--drop-caches",
        action="store_true",
        help="drop the whole page cache (/proc/sys/vm/drop_caches) before each cold run, not "
        "only the files' pages: only on a dedicated machine",
    )
    args = parser.parse_args()
    DROP_ALL["on"] = args.drop_caches
    device = torch.device(args.device)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "none",
        "cpus": os.cpu_count(),
    }

    def save() -> None:
        args.out.write_text(json.dumps(results, indent=1))
        print(json.dumps(results), flush=True)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    for phase in args.phases.split(","):
        if phase == "wired":
            wired_phase(args.dir / "hf", args.gb, device, results, save)
        elif phase == "raw":
            raw_phase(args, results, save)
        else:
            parser.error(f"--phases: {phase!r} is not a phase; allowed: wired, raw")


def raw_phase(args: argparse.Namespace, results: dict[str, Any], save: Any) -> None:
    paths, seconds = timed(lambda: write_shards(args.dir, args.gb))
    size = sum(p.stat().st_size for p in paths)
    results.update(files=len(paths), bytes=size, write_s=round(seconds, 1))
    save()
    gb = size / 1e9

    def run(label: str, fn: Callable[[], Any], cold: bool) -> Any:
        if cold:
            results[label + "_drop"] = drop_page_cache(paths)
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

"""Cold and warm load of a Hugging Face directory on the CPU: today's loader and the two ways
of wiring weight_loading into it, side by side in one process.

    python bench/cold_load.py --dir /tmp/cold-load-model --out cold_load_cpu.json

Saves a random Llama-shaped model (about --gb GB in --save-dtype, sharded like a published
checkpoint) with save_pretrained, then, for --rounds rounds, times each loader with the files
evicted from the page cache (fsync + posix_fadvise(DONTNEED), checked in /proc/meminfo) and with
them cached, serving --dtype:
  from_pretrained           AutoModelForCausalLM.from_pretrained (what models.py did before)
  prefetch+from_pretrained  weight_loading.prefetch (parallel whole-file reads), then the same
  parallel_assign           hf_loading.load_parallel (what a GPU gets; here onto the CPU): meta
                            model + load_safetensors + cast + assign
The loaded tensors of every loader are compared with from_pretrained's once. Local disk only:
on NFS (UFS) the cold figures depend on the network and the server, not measured here.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "image"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_cold_load import cached_gb, evict
from llmserve.hf_loading import load_parallel, safetensors_files
from llmserve.weight_loading import prefetch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def save_model(directory: Path, gb: float, dtype: torch.dtype) -> list[Path]:
    hidden, ffn, vocab = 1536, 4096, 32000
    per_layer = 4 * hidden * hidden + 3 * hidden * ffn
    layers = max(1, round((gb * 1e9 / dtype.itemsize - vocab * hidden) / per_layer))
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=12,
        num_key_value_heads=12,
        tie_word_embeddings=True,
    )
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(directory, max_shard_size="300MB")
    return safetensors_files(directory) or []


def loaders(path: Path, dtype: torch.dtype) -> dict[str, Callable[[], Any]]:
    def from_pretrained() -> Any:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")

    def prefetched() -> Any:
        prefetch(sorted(path.glob("*.safetensors")))
        return from_pretrained()

    return {
        "from_pretrained": from_pretrained,
        "prefetch+from_pretrained": prefetched,
        "parallel_assign": lambda: load_parallel(
            path, AutoConfig.from_pretrained(path), torch.device("cpu"), dtype
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--save-dtype", choices=DTYPES, default="bfloat16")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="the served dtype")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    files = save_model(args.dir, args.gb, DTYPES[args.save_dtype])
    size = sum(p.stat().st_size for p in files)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "files": len(files),
        "bytes": size,
        "save_dtype": args.save_dtype,
        "dtype": args.dtype,
        "runs_s": {},
    }
    runs: dict[str, list[float]] = {}
    reference: dict[str, torch.Tensor] | None = None
    for _round in range(args.rounds):
        for name, load in loaders(args.dir, DTYPES[args.dtype]).items():
            for cold in (True, False):
                if cold:
                    evict(files)
                    results.setdefault("cached_gb_after_evict", []).append(cached_gb())
                t0 = time.perf_counter()
                model = load()
                seconds = time.perf_counter() - t0
                runs.setdefault(f"{name}_{'cold' if cold else 'warm'}", []).append(seconds)
                state = model.state_dict()
                if reference is None:
                    reference = {k: v.clone() for k, v in state.items()}
                elif f"{name}_equal" not in results:
                    results[f"{name}_equal"] = set(state) == set(reference) and all(
                        torch.equal(state[k], reference[k]) for k in reference
                    )
                del model, state
                gc.collect()
        results["runs_s"] = {k: [round(s, 2) for s in v] for k, v in runs.items()}
        results["median_s"] = {k: round(statistics.median(v), 2) for k, v in runs.items()}
        args.out.write_text(json.dumps(results, indent=1))
        print(json.dumps(results["median_s"]), flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

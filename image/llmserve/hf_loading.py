"""Load a Hugging Face causal-LM directory: on a GPU through weight_loading's parallel reads.

Why: from_pretrained maps each safetensors file and copies tensor by tensor to the GPU from
pageable memory, so every byte arrives through a page fault: one NFS round trip each on UFS, one
thread's copy on a local disk. On a GPU the model is built with its parameters on the meta
device (buffers such as rotary inv_freq are computed as usual), the files are read whole in
parallel straight onto the GPU through pinned buffers (weight_loading.load_safetensors), cast to
the served dtype and assigned; the tied weights are tied again and the generation config read
as from_pretrained reads it. Only checkpoints whose tensor names are exactly the model's
parameters take that path; anything else from_pretrained knows how to fix (renamed or fused
keys, a missing prefix, quantized or .bin checkpoints, modules kept in float32) goes to
from_pretrained itself.

On the CPU from_pretrained's mapping is faster (bench/cold_load.py: reading into memory and
then casting is one more pass over the bytes than casting from the mapping), so it stays, with
the files first read whole in parallel into the page cache when they are on a network
filesystem (weight_loading.prefetch), so the mapping's page faults hit memory."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
from transformers.initialization import no_init_weights

from llmserve.weight_loading import (
    FileLayout,
    filesystem_type,
    load_safetensors,
    on_network_filesystem,
    prefetch,
    read_layout,
)

log = logging.getLogger("llmserve.hf_loading")

SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_SINGLE = "model.safetensors"


class HfLoadError(ValueError):
    """A tensor of the checkpoint does not fit the model its config.json describes."""


def safetensors_files(path: Path) -> list[Path] | None:
    """The checkpoint's safetensors files as transformers would pick them; None without any."""
    index = path / SAFETENSORS_INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        return [path / name for name in sorted(set(weight_map.values()))]
    single = path / SAFETENSORS_SINGLE
    return [single] if single.is_file() else None


def _weight_files(path: Path) -> list[Path]:
    """Every file from_pretrained may read weights from, for prefetch()."""
    return sorted(
        p for pattern in ("*.safetensors", "*.bin") for p in path.glob(pattern) if p.is_file()
    )


def _meta_model(config: Any, dtype: torch.dtype) -> Any:
    """Parameters on the meta device, not initialised (a random init of meta tensors still
    costs ~10 ms a tensor in torch's reference kernels); tied again after loading."""
    with init_empty_weights(include_buffers=False), no_init_weights():
        return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")


def fast_path_refusal(model: Any, config: Any, layouts: list[FileLayout]) -> str | None:
    """Why this checkpoint needs from_pretrained's conversions, or None when its tensors are
    exactly the meta model's parameters (tied copies may be absent)."""
    if getattr(config, "quantization_config", None):
        return "the config has a quantization_config"
    if model._keep_in_fp32_modules or getattr(model, "_keep_in_fp32_modules_strict", None):
        return "the model keeps some modules in float32"
    expected = model.state_dict()
    names = {entry.name for layout in layouts for entry in layout.tensors}
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    params = {name for name, p in model.named_parameters(remove_duplicate=False) if p.is_meta}
    missing = sorted(params - names - tied)
    unexpected = sorted(names - set(expected))
    if missing:
        return f"the checkpoint lacks {missing[:3]} ({len(missing)} in all)"
    if unexpected:
        return f"the checkpoint has tensors the model does not name, e.g. {unexpected[:3]}"
    return None


def _file_groups(layouts: list[FileLayout], targets: dict[str, torch.Tensor]) -> list[list[Path]]:
    """All files in one parallel read when no tensor changes dtype; else one file at a time, so
    a file's raw bytes are freed once cast and the device never holds the checkpoint twice."""
    casts = any(
        entry.dtype != targets[entry.name].dtype for layout in layouts for entry in layout.tensors
    )
    paths = [layout.path for layout in layouts]
    return [[p] for p in paths] if casts else [paths]


def _read_ahead(groups: list[list[Path]], device: torch.device) -> Iterator[dict[str, Any]]:
    """Each group's tensors, the next group read while the caller casts this one."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="weights-ahead") as reader:
        pending = reader.submit(load_safetensors, groups[0], device)
        for group in groups[1:]:
            ready = pending.result()
            pending = reader.submit(load_safetensors, group, device)
            yield ready
            del ready
        yield pending.result()


def _assign(model: Any, part: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> None:
    state = {}
    for name, tensor in part.items():
        target = targets[name]
        if tensor.shape != target.shape:
            raise HfLoadError(
                f"tensor {name!r} has shape {tuple(tensor.shape)} in the checkpoint but "
                f"{tuple(target.shape)} in the model config.json describes"
            )
        state[name] = tensor if tensor.dtype == target.dtype else tensor.to(target.dtype)
    model.load_state_dict(state, strict=False, assign=True)


def load_fast(path: Path, model: Any, layouts: list[FileLayout], device: torch.device) -> Any:
    targets = model.state_dict()
    for part in _read_ahead(_file_groups(layouts, targets), device):
        _assign(model, part, targets)
        del part
    model.tie_weights()
    model.to(device)  # the buffers built on the CPU; parameters are already there
    if device.type == "cuda":  # the raw bytes of cast files: free for the KV buffers' sizing
        torch.cuda.empty_cache()
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise HfLoadError(f"no values were loaded for {left[:3]} ({len(left)} in all)")
    if (path / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(path)
    model.config.name_or_path = str(path)
    return model.eval()


def load_parallel(path: Path, config: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """The model read through load_safetensors, or None (the reason logged) when the checkpoint
    needs from_pretrained's conversions."""
    files = safetensors_files(path)
    if files is None:
        log.info("%s: no safetensors files to read in parallel", path)
        return None
    layouts = [read_layout(p) for p in files]
    model = _meta_model(config, dtype)
    refusal = fast_path_refusal(model, config, layouts)
    if refusal is not None:
        log.info("%s: not read in parallel: %s", path, refusal)
        return None
    log.info("reading %d safetensors files in parallel onto %s", len(files), device)
    return load_fast(path, model, layouts, device)


def load_mapped(path: Path, device: torch.device, dtype: torch.dtype) -> Any:
    """from_pretrained, which maps the files; from a network filesystem they are first read
    whole in parallel into the page cache, so the mapping's page faults hit memory."""
    if on_network_filesystem(path):
        log.info("%s is on %s: prefetching its weight files", path, filesystem_type(path))
        prefetch(_weight_files(path))
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
    return model.to(device).eval()


def load_hf_directory(path: Path, device: torch.device, dtype: torch.dtype) -> Any:
    """The model of `path` on `device` in `dtype`, as from_pretrained(path, dtype=dtype) and
    .to(device) would give it. On a GPU, read in parallel through pinned buffers; on the CPU,
    from_pretrained's mapped files are faster (bench/cold_load.py: the parallel read adds a
    copy that the mapping does not make)."""
    config = AutoConfig.from_pretrained(path)
    if device.type != "cpu":
        model = load_parallel(path, config, device, dtype)
        if model is not None:
            return model
    return load_mapped(path, device, dtype)

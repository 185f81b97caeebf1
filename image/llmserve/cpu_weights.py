"""Compact CPU weights, converted once: int8 weight-only Linears cached as safetensors.

Why: transformers dequantizes a GGUF file to float32 on every start (~16 s for SmolLM2-135M on
2 cores) and each decode step then reads ~540 MB of float32 weights. Here the first start
converts every Linear to symmetric per-channel int8 (quantization.Int8WeightOnlyLinear, run by
torch's `_weight_int8pack_mm` CPU kernel) and saves the result under
`$XDG_CACHE_HOME/llmserve/cpu-int8/<sha256 of the source>/`; later starts build the model on the
meta device and assign the saved tensors to it, so no float weight is built and nothing is
converted again. A step then reads ~135 MB (the embedding table stays float32: a lookup reads
one row of it).

The key is the SHA-256 of the source file's bytes (0.3 s for the 100 MB GGUF here), remembered
per (path, size, mtime) so a second start does not hash again. A cache entry is written to a
temporary directory and renamed into place, so a crash never leaves a half entry that looks
whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

from llmserve.quantization import Int8WeightOnlyLinear, quantize_model

log = logging.getLogger("llmserve.cpu_weights")

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "llmserve-int8.json"
HASH_CHUNK = 8 << 20


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmserve"


def source_digest(path: Path) -> str:
    """A file's digest; for a model directory, the digest of its files' names and digests."""
    if path.is_file():
        return file_digest(path)
    lines = [
        f"{p.relative_to(path)}:{file_digest(p)}"
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes, remembered under its (path, size, mtime) so it is computed
    once per file version."""
    stat = path.stat()
    memo_key = hashlib.sha256(
        f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    ).hexdigest()[:32]
    memo = cache_root() / "digests" / memo_key
    try:
        known = memo.read_text().strip()
        if len(known) == 64:
            return known
    except OSError:
        pass
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(value + "\n")
    except OSError as err:
        log.info("not remembering the digest of %s: %s", path, err)
    return value


def entry_dir(digest: str) -> Path:
    return cache_root() / "cpu-int8" / f"{digest}-v{FORMAT_VERSION}"


def _tensors_to_save(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and every buffer (non-persistent ones such as rotary inv_freq too: a model
    built on the meta device has no values for them)."""
    out: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.data_ptr() in seen and tensor.numel():
            raise ValueError(f"{name} shares storage with {seen[tensor.data_ptr()]}")
        seen[tensor.data_ptr()] = name
        out[name] = tensor.detach().contiguous()
    return out


def save_entry(model: nn.Module, dest: Path) -> None:
    """Write the converted model (config, generation config, tensors, manifest last)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        model.config.save_pretrained(tmp)
        generation = getattr(model, "generation_config", None)
        if generation is not None:
            generation.save_pretrained(tmp)
        save_file(_tensors_to_save(model), str(tmp / WEIGHTS_FILE))
        int8 = sorted(n for n, m in model.named_modules() if isinstance(m, Int8WeightOnlyLinear))
        (tmp / MANIFEST_FILE).write_text(
            json.dumps({"format": FORMAT_VERSION, "int8_linears": int8}) + "\n"
        )
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    if leaf in owner._parameters:
        owner._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
    elif leaf in owner._buffers:
        owner._buffers[leaf] = tensor
    else:
        raise KeyError(f"the cached tensor {name!r} has no place in the model")


def load_entry(src: Path) -> nn.Module:
    """Build the model on the meta device and assign the cached tensors to it."""
    manifest = json.loads((src / MANIFEST_FILE).read_text())
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"{src}: format {manifest.get('format')!r}, want {FORMAT_VERSION}")
    config = AutoConfig.from_pretrained(src)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            config, dtype=torch.float32, attn_implementation="sdpa"
        )
    for name in manifest["int8_linears"]:
        linear = model.get_submodule(name)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(
            parent,
            child,
            Int8WeightOnlyLinear.empty(
                linear.in_features, linear.out_features, linear.bias is not None
            ),
        )
    with safe_open(str(src / WEIGHTS_FILE), framework="pt", device="cpu") as f:
        for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            _assign(model, name, f.get_tensor(name))
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"{src}: no cached value for {', '.join(left[:5])}")
    if (src / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(src)
    return model.eval()


def int8_model(source: Path, build_float: Callable[[], Any], report: Callable[[str], None]) -> Any:
    """The int8 CPU model of `source`: from the cache, or converted (and cached) now."""
    digest = source_digest(source)
    entry = entry_dir(digest)
    if (entry / MANIFEST_FILE).is_file():
        try:
            model = load_entry(entry)
            report(f"loaded int8 weights from the cache {entry}")
            return model
        except Exception as err:  # a broken or outdated entry is rebuilt below
            log.warning("cached CPU weights at %s are unusable (%s); converting again", entry, err)
    report(f"converting {source.name} to int8 weights (first start only)")
    model = build_float()
    quantize_model(model, "int8")
    for module in model.modules():
        if isinstance(module, Int8WeightOnlyLinear):
            module.use_bf16_on_cpu()
    try:
        save_entry(model, entry)
        report(f"cached the converted weights in {entry}")
    except OSError as err:
        log.warning("not caching the converted weights at %s: %s", entry, err)
    return model.eval()

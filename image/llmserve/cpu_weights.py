"""Compact CPU weights, converted once: int4 and int8 weight-only Linears cached as safetensors.

Why: transformers dequantizes a GGUF file to float32 on every start (~16 s for SmolLM2-135M on
2 cores) and each decode step then reads ~540 MB of float32 weights. Here the first start keeps
every Linear the GGUF file holds as Q4_1 blocks as those blocks (int4_cpu.Int4WeightOnlyLinear,
torch's CPU int4 kernel; gguf_q4.py), converts every other Linear (the tied lm_head, Linears of
Hugging Face directories) to symmetric per-channel int8 (quantization.Int8WeightOnlyLinear, run
by torch's `_weight_int8pack_mm`), and saves the result under
`$XDG_CACHE_HOME/llmserve/cpu-weights/<sha256 of the source>-v<format>-<torch>-<cpu>/`; later
starts build the model on the meta device (a Llama as cpu_llama.py's model, which needs no
transformers modeling import; others as transformers' class) and assign the saved tensors to it,
memory-mapped from the file, so no float weight is built and nothing is converted again. The
first start serves the entry it just wrote the same way. A step then reads ~80 MB for
SmolLM2-135M (the embedding table stays float32: a lookup reads one row of it).

The key is the SHA-256 of the source file's bytes (0.3 s for the 100 MB GGUF here), remembered
per (path, size, mtime) so a second start does not hash again; the format version, the torch
version and the CPU capability are part of the entry's name, because the int4 weights are saved
in the layout torch's kernel packed them into for this CPU. A cache entry is written to a
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

from llmserve import cpu_llama
from llmserve.int4_cpu import Int4WeightOnlyLinear
from llmserve.quantization import Int8WeightOnlyLinear, quantize_model

log = logging.getLogger("llmserve.cpu_weights")

# 2: int4 Linears from Q4_1 blocks (1 was int8 only, in cpu-int8/). Bump on any change of what
# an entry holds, so an older entry is never loaded as a newer one.
FORMAT_VERSION = 3  # 3: Linears whose in_features is not a multiple of 16 stay float
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "llmserve-cpu-weights.json"
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
    kernel = f"torch{torch.__version__.split('+')[0]}-{torch.backends.cpu.get_cpu_capability()}"
    return cache_root() / "cpu-weights" / f"{digest}-v{FORMAT_VERSION}-{kernel.lower()}"


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
        manifest = {
            "format": FORMAT_VERSION,
            **{key: _names_of(model, cls) for key, cls in LINEAR_KINDS.items()},
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


LINEAR_KINDS: dict[str, type[Int8WeightOnlyLinear] | type[Int4WeightOnlyLinear]] = {
    "int8_linears": Int8WeightOnlyLinear,
    "int4_linears": Int4WeightOnlyLinear,
}


def _names_of(model: nn.Module, cls: type[nn.Module]) -> list[str]:
    return sorted(n for n, m in model.named_modules() if isinstance(m, cls))


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    if leaf in owner._parameters:
        owner._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
    elif leaf in owner._buffers:
        owner._buffers[leaf] = tensor
    else:
        raise KeyError(f"the cached tensor {name!r} has no place in the model")


def _build_on_meta(src: Path, manifest: dict[str, Any]) -> nn.Module:
    """The entry's model with empty (meta) tensors, its compact Linears already in place: the
    lean Llama (cpu_llama.py, no transformers modeling import) where it serves the config, else
    transformers' class for it."""
    shells: dict[str, type[Int8WeightOnlyLinear] | type[Int4WeightOnlyLinear]] = {
        name: cls for key, cls in LINEAR_KINDS.items() for name in manifest.get(key, [])
    }
    config = cpu_llama.LeanLlamaConfig.from_pretrained(src)
    if cpu_llama.unsupported_reason(config) is None:

        def linear(name: str, in_features: int, out_features: int) -> nn.Module:
            cls = shells.get(name)
            if cls is not None:
                return cls.empty(in_features, out_features, False)
            return nn.Linear(in_features, out_features, bias=False, device="meta")

        with torch.device("meta"):
            return cpu_llama.LeanLlamaForCausalLM(config, linear)
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(src)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            config, dtype=torch.float32, attn_implementation="sdpa"
        )
    for name, cls in shells.items():
        linear = model.get_submodule(name)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        shell = cls.empty(linear.in_features, linear.out_features, linear.bias is not None)
        setattr(parent, child, shell)
    return model


def load_entry(src: Path) -> nn.Module:
    """Build the model on the meta device and assign the cached tensors to it (memory-mapped
    from the entry's safetensors file, not copied)."""
    manifest = json.loads((src / MANIFEST_FILE).read_text())
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"{src}: format {manifest.get('format')!r}, want {FORMAT_VERSION}")
    model = _build_on_meta(src, manifest)
    with safe_open(str(src / WEIGHTS_FILE), framework="pt", device="cpu") as f:
        for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            _assign(model, name, f.get_tensor(name))
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"{src}: no cached value for {', '.join(left[:5])}")
    if (src / "generation_config.json").is_file():
        from transformers.generation.configuration_utils import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(src)
    return model.eval()


def compact_model(
    source: Path, build_float: Callable[[], Any], report: Callable[[str], None]
) -> Any:
    """The int4/int8 CPU model of `source`: from the cache, or converted (and cached) now."""
    digest = source_digest(source)
    entry = entry_dir(digest)
    if (entry / MANIFEST_FILE).is_file():
        try:
            model = load_entry(entry)
            report(f"loaded compact weights from the cache {entry}")
            return model
        except Exception as err:  # a broken or outdated entry is rebuilt below
            log.warning("cached CPU weights at %s are unusable (%s); converting again", entry, err)
    report(f"converting {source.name} to int4/int8 weights (first start only)")
    model = build_float()
    if source.is_file() and source.suffix.lower() == ".gguf":
        from llmserve.gguf_q4 import swap_q4_1_linears  # the gguf reader: first start only

        swap_q4_1_linears(model, source)
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
    # Serve what every later start serves (the same class, the same memory-mapped tensors), so
    # a first and a second start answer alike; the converted copy is dropped.
    return load_entry(entry)


int8_model = compact_model  # the name models.py imports

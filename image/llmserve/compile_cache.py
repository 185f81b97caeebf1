"""Keep torch.compile's caches on the model volume, so a second pod does not compile again.

Why: compiling the one-row decode step takes ~1.5 min for a 6B model on an H200, and the caches
default to /tmp (an emptyDir in the stack's pod), so every new pod paid it again. Inductor's FX
graph cache and AOTAutograd cache are on by default in torch >= 2.4; they only need a directory
that outlives the pod. What they store is only valid for the same torch/Triton build and the same
GPU kind, so the directory is keyed by model, torch version, Triton version and GPU, and pods of
another GPU type or image never read each other's entries.

Environment read by torch (torch/_inductor/runtime/cache_dir_utils.py, torch/_inductor/config.py,
torch/_functorch/config.py): TORCHINDUCTOR_CACHE_DIR (Inductor's root: FX graph cache under
fxgraph/, AOTAutograd cache under aotautograd/, autotuning results), TRITON_CACHE_DIR (compiled
Triton kernels; Inductor defaults it to <root>/triton/<device> when unset),
TORCHINDUCTOR_FX_GRAPH_CACHE=1 and TORCHINDUCTOR_AUTOGRAD_CACHE=1 (force the two caches on).
Call configure() before the first torch.compile runs.

Shared volumes: Inductor writes each entry to a temporary name and renames it into place
(codecache.write_atomic), but the temporary name is `.<pid>.<thread id>.tmp`, which two pods
(each its server as pid 1) can share on NFS. So pods compile into a local directory, and the
finished cache is published to the volume as one file (torch.compiler.save_cache_artifacts),
written under a name unique to the pod and renamed into place; a pod starting later loads that
file (load_cache_artifacts) into its local directory before compiling.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger("llmserve.compile_cache")

ARTIFACT_NAME = "torch-compile-artifacts.bin"
LOCAL_ROOT = Path(tempfile.gettempdir()) / "llmserve-compile-cache"  # this pod's working copy
ENV_VARS = (
    "TORCHINDUCTOR_CACHE_DIR",
    "TRITON_CACHE_DIR",
    "TORCHINDUCTOR_FX_GRAPH_CACHE",
    "TORCHINDUCTOR_AUTOGRAD_CACHE",
)


@dataclass(frozen=True)
class CacheKey:
    model: str  # the model's identity: its path or preset, and a hash of its config
    torch_version: str
    triton_version: str
    gpu: str  # device name and compute capability, e.g. "NVIDIA H200 sm90"
    extra: str = ""  # anything else that changes the compiled code (quantization mode)

    def directory_name(self) -> str:
        """Readable prefix (slugged model and GPU) plus a hash of every field."""
        digest = hashlib.sha256(
            "\0".join(
                (self.model, self.torch_version, self.triton_version, self.gpu, self.extra)
            ).encode()
        ).hexdigest()[:16]
        slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{Path(self.model).name}-{self.gpu}").strip("-")
        return f"{slug[:60]}-{digest}"


def _triton_version() -> str:
    try:
        import triton

        return str(triton.__version__)
    except Exception:  # CPU builds: no Triton, nothing of it cached
        return "none"


def gpu_identity(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    major, minor = torch.cuda.get_device_capability(device)
    return f"{torch.cuda.get_device_name(device)} sm{major}{minor}"


def model_identity(source: str) -> str:
    """A model directory is named by its path and its config.json's hash (the same path with a
    new model in it gets a new key); a preset or GGUF file by its name."""
    path = Path(source)
    config = path / "config.json"
    if config.is_file():
        return f"{path.name}:{hashlib.sha256(config.read_bytes()).hexdigest()[:16]}"
    return source


def cache_key(source: str, device: torch.device, extra: str = "") -> CacheKey:
    return CacheKey(
        model_identity(source), torch.__version__, _triton_version(), gpu_identity(device), extra
    )


def configure(volume_root: Path | None, key: CacheKey, local_root: Path) -> Path:
    """Point torch's caches at `local_root/<key>`, hydrated from the volume's published
    artifacts when there are any; returns that local directory."""
    local = local_root / key.directory_name()
    local.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(local / "inductor")
    os.environ["TRITON_CACHE_DIR"] = str(local / "triton")
    os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "1"
    os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "1"
    if volume_root is not None:
        published = volume_root / key.directory_name() / ARTIFACT_NAME
        if published.is_file():
            try:
                info = torch.compiler.load_cache_artifacts(published.read_bytes())
                log.info("loaded torch.compile cache from %s: %s", published, info)
            except Exception as err:  # a stale or torn file only costs a compilation
                log.warning("ignoring the torch.compile cache at %s: %s", published, err)
    return local


def publish(volume_root: Path, key: CacheKey) -> Path | None:
    """After warm-up: write what this process compiled to the volume, atomically; returns the
    file, or None when there was nothing to save or the volume refused it."""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return None
    data, _info = saved
    target_dir = volume_root / key.directory_name()
    target = target_dir / ARTIFACT_NAME
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        temporary = target_dir / f".{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        temporary.write_bytes(data)
        os.replace(temporary, target)
    except OSError as err:
        log.warning("not publishing the torch.compile cache to %s: %s", target_dir, err)
        return None
    log.info("published the torch.compile cache (%d bytes) to %s", len(data), target)
    return target

"""Read safetensors files to the GPU fast: whole files in parallel, through pinned buffers.

Why: safetensors' own loader maps each file and copies tensor by tensor, so every byte arrives
through a page fault of the mapping (a few hundred KB of readahead at a time). From NFS (UFS)
each fault is a round trip; from local disk it is one thread's copy. Here each file is read with
large positioned reads (`os.preadv`, which releases the GIL) by several threads at once, straight
into pinned host buffers, and each buffer goes to the GPU with one asynchronous copy on its
thread's stream while the next one is read. A file's data lands in one device allocation; every
tensor of the file is a view of it (no per-tensor copy at all).

The file format (8-byte little-endian header length, a JSON header of dtype / shape /
data_offsets relative to the end of the header, then the data) is safetensors' documented one.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
DEFAULT_THREADS = 8
DEFAULT_CHUNK_BYTES = 64 << 20
MAX_HEADER_BYTES = 100 << 20  # safetensors itself refuses larger headers


class WeightFileError(ValueError):
    """A weights file that is not valid safetensors; the message names the file and the fault."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # byte offset within the file's data section
    end: int


@dataclass(frozen=True)
class FileLayout:
    path: Path
    data_offset: int  # where the data section starts in the file
    data_bytes: int
    tensors: tuple[TensorEntry, ...]


def read_layout(path: Path) -> FileLayout:
    """Parse a safetensors header, checking every entry against the file's size."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WeightFileError(f"{path}: shorter than a safetensors header")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
            raise WeightFileError(f"{path}: header length {header_len} does not fit the file")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise WeightFileError(f"{path}: header is not JSON ({err})") from None
    data_offset = 8 + header_len
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise WeightFileError(
                f"{path}: tensor {name!r} has dtype {info.get('dtype')!r}; "
                f"allowed: {', '.join(DTYPES)}"
            )
        shape = tuple(int(d) for d in info["shape"])
        start, end = (int(o) for o in info["data_offsets"])
        numel = 1
        for d in shape:
            numel *= d
        if end - start != numel * dtype.itemsize or start < 0 or data_offset + end > size:
            raise WeightFileError(
                f"{path}: tensor {name!r} offsets {start}..{end} do not match "
                f"shape {shape} of {info['dtype']} inside the file"
            )
        entries.append(TensorEntry(name, dtype, shape, start, end))
    return FileLayout(path, data_offset, size - data_offset, tuple(entries))


def _chunks(total: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, chunk):
        yield start, min(total, start + chunk)


def _pread_into(fd: int, view: memoryview, offset: int, path: Path) -> None:
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            raise WeightFileError(f"{path}: ended early at byte {offset + done}")
        done += n


class _Staging:
    """One thread's pinned buffers (two, so one is read while the other's copy runs), its
    stream, and the event of each buffer's last copy."""

    def __init__(self, device: torch.device, chunk_bytes: int) -> None:
        self.stream = torch.cuda.Stream(device=device)
        self.buffers = [
            torch.empty(chunk_bytes, dtype=torch.uint8, pin_memory=True) for _ in range(2)
        ]
        self.events: list[torch.cuda.Event | None] = [None, None]
        self.turn = 0


def _views(layout: FileLayout, data: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {}
    for entry in layout.tensors:
        raw = data[entry.start : entry.end]
        if entry.start % entry.dtype.itemsize:  # unaligned: a view of another dtype is refused
            raw = raw.clone()
        out[entry.name] = raw.view(entry.dtype).view(entry.shape)
    return out


def load_safetensors(
    paths: Iterable[Path | str],
    device: torch.device | str = "cpu",
    *,
    threads: int = DEFAULT_THREADS,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> dict[str, torch.Tensor]:
    """Every tensor of `paths` on `device`, as safetensors.torch.load_file would give them."""
    device = torch.device(device)
    layouts = [read_layout(Path(p)) for p in paths]
    seen: dict[str, Path] = {}
    for layout in layouts:
        for entry in layout.tensors:
            if entry.name in seen:
                raise WeightFileError(
                    f"tensor {entry.name!r} is in both {seen[entry.name]} and {layout.path}"
                )
            seen[entry.name] = layout.path
    targets = [
        torch.empty(layout.data_bytes, dtype=torch.uint8, device=device) for layout in layouts
    ]
    jobs = [
        (i, start, end)
        for i, layout in enumerate(layouts)
        for start, end in _chunks(layout.data_bytes, chunk_bytes)
    ]
    fds = [os.open(layout.path, os.O_RDONLY) for layout in layouts]
    local = threading.local()
    used: list[_Staging] = []
    lock = threading.Lock()
    cuda = device.type == "cuda"

    def read(job: tuple[int, int, int]) -> None:
        index, start, end = job
        layout, target = layouts[index], targets[index]
        offset = layout.data_offset + start
        if not cuda:  # host memory: read straight into the result
            _pread_into(fds[index], memoryview(target[start:end].numpy()), offset, layout.path)
            return
        staging = getattr(local, "staging", None)
        if staging is None:
            staging = local.staging = _Staging(device, chunk_bytes)
            with lock:
                used.append(staging)
        slot = staging.turn
        staging.turn ^= 1
        pending = staging.events[slot]
        if pending is not None:
            pending.synchronize()  # the buffer's previous copy has left it
        buffer = staging.buffers[slot][: end - start]
        _pread_into(fds[index], memoryview(buffer.numpy()), offset, layout.path)
        with torch.cuda.stream(staging.stream):
            target[start:end].copy_(buffer, non_blocking=True)
            event = torch.cuda.Event()
            event.record(staging.stream)
        staging.events[slot] = event

    try:
        with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="weights") as pool:
            for _ in pool.map(read, jobs):
                pass
        if cuda:
            for state in used:
                state.stream.synchronize()
    finally:
        for fd in fds:
            os.close(fd)
    out: dict[str, torch.Tensor] = {}
    for layout, target in zip(layouts, targets, strict=True):
        out.update(_views(layout, target))
    return out


def prefetch(
    paths: Iterable[Path | str],
    *,
    threads: int = DEFAULT_THREADS,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> int:
    """Read whole files in parallel into the page cache (and throw the bytes away), so a loader
    that maps them (transformers' from_pretrained) takes no slow page faults; returns bytes."""
    files = [Path(p) for p in paths]
    jobs = [(p, s, e) for p in files for s, e in _chunks(p.stat().st_size, chunk_bytes)]
    local = threading.local()

    def read(job: tuple[Path, int, int]) -> int:
        path, start, end = job
        if getattr(local, "buffer", None) is None:
            local.buffer = bytearray(chunk_bytes)
        fd = os.open(path, os.O_RDONLY)
        try:
            _pread_into(fd, memoryview(local.buffer)[: end - start], start, path)
        finally:
            os.close(fd)
        return end - start

    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="prefetch") as pool:
        return sum(pool.map(read, jobs))


def release_file_buffers(module: torch.nn.Module) -> int:
    """Give every parameter and buffer that is still a view of a file's allocation (see
    load_safetensors) its own storage; returns the bytes copied.

    Why: a file's allocation is freed only when no tensor views it any more. After some weights
    were replaced (quantized Linear layers, say), the embeddings and norms still viewing the
    same files would keep every replaced weight's bytes allocated; call this after replacing."""
    copied = 0
    replaced: dict[int, torch.Tensor] = {}  # tied weights stay one tensor
    for owner in module.modules():
        for table in (owner._parameters, owner._buffers):
            for name, tensor in table.items():
                if tensor is None or tensor.is_meta:
                    continue
                if id(tensor) in replaced:
                    table[name] = replaced[id(tensor)]
                    continue
                if tensor.untyped_storage().nbytes() <= tensor.nbytes:
                    continue
                data = tensor.detach().clone()
                if isinstance(tensor, torch.nn.Parameter):
                    data = torch.nn.Parameter(data, requires_grad=tensor.requires_grad)
                replaced[id(tensor)] = table[name] = data
                copied += tensor.nbytes
    return copied


NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "lustre", "9p")


def filesystem_type(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> str:
    """The type of the filesystem holding `path` (its longest mount point in mountinfo), or
    "unknown" where there is no mountinfo (not Linux)."""
    try:
        lines = mountinfo.read_text(encoding="utf-8").splitlines()
    except OSError:
        return "unknown"
    target = str(path.resolve())
    best, kind = "", "unknown"
    for line in lines:
        fields, _sep, tail = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not tail:
            continue
        mount = parts[4].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, tail.split()[0]
    return kind


def on_network_filesystem(path: Path) -> bool:
    """Where every page fault of a mapping is a network round trip (UFS is NFSv4)."""
    kind = filesystem_type(path)
    return kind in NETWORK_FILESYSTEMS or kind.startswith("fuse.")

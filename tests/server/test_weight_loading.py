"""llmserve.weight_loading on CPU: the same tensors as safetensors.torch.load_file, and clear
errors for files that are not valid safetensors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from llmserve.weight_loading import WeightFileError, load_safetensors, prefetch, read_layout
from safetensors.torch import load_file, save_file


def _tensors(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "layer.w": torch.randn(33, 17, generator=g).to(torch.bfloat16),
        "layer.h": torch.randn(5, 3, generator=g).to(torch.float16),
        "layer.f": torch.randn(1000, 7, generator=g),
        "layer.i": torch.randint(-9, 9, (11,), generator=g),
        "layer.mask": torch.rand(6, generator=g) > 0.5,
        "layer.q": torch.randint(-127, 127, (3, 9), generator=g).to(torch.int8),
        "layer.fp8": torch.randn(4, 8, generator=g).to(torch.float8_e4m3fn),
        "scalar": torch.tensor(2.5),
    }


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.uint8) if t.dtype.is_floating_point and t.element_size() == 1 else t


@pytest.mark.parametrize(("threads", "chunk"), [(1, 1 << 20), (4, 64), (3, 4097)])
def test_same_tensors_as_safetensors(tmp_path: Path, threads: int, chunk: int) -> None:
    paths = []
    for i in range(3):
        path = tmp_path / f"model-{i}.safetensors"
        save_file({f"{k}.{i}": v for k, v in _tensors(i).items()}, str(path))
        paths.append(path)
    ours = load_safetensors(paths, "cpu", threads=threads, chunk_bytes=chunk)
    reference: dict[str, torch.Tensor] = {}
    for path in paths:
        reference.update(load_file(str(path)))
    assert set(ours) == set(reference)
    for name, expected in reference.items():
        got = ours[name]
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        assert torch.equal(_bits(got), _bits(expected)), name


def test_duplicate_names_across_files_are_refused(tmp_path: Path) -> None:
    for i in range(2):
        save_file({"w": torch.zeros(2)}, str(tmp_path / f"{i}.safetensors"))
    with pytest.raises(WeightFileError, match="'w' is in both"):
        load_safetensors(sorted(tmp_path.glob("*.safetensors")))


def test_truncated_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    save_file({"w": torch.randn(64, 64)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(WeightFileError, match=r"cut\.safetensors.*'w'"):
        load_safetensors([path])


def _raw_file(path: Path, header: dict[str, object], data: bytes) -> Path:
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def test_unknown_dtype_names_the_allowed_ones(tmp_path: Path) -> None:
    path = _raw_file(
        tmp_path / "x.safetensors",
        {"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}},
        bytes(8),
    )
    with pytest.raises(WeightFileError, match=r"'C64'.*allowed: F64"):
        read_layout(path)


def test_header_length_beyond_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", 10_000) + b"{}")
    with pytest.raises(WeightFileError, match="does not fit"):
        read_layout(path)


def test_prefetch_reads_every_byte(tmp_path: Path) -> None:
    files = []
    for i, size in enumerate((0, 1, 5000, 70_000)):
        path = tmp_path / f"f{i}"
        path.write_bytes(bytes(size))
        files.append(path)
    assert prefetch(files, threads=3, chunk_bytes=4096) == 75_001

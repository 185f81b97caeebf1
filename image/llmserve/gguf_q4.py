"""Swap a GGUF model's Linears whose weights the file holds as Q4_1 blocks for int4 Linears
built from those very blocks (int4_cpu.py).

Why: transformers dequantizes a GGUF file to float; re-quantizing that float to int8 costs a
second rounding and twice the bytes of the file's own 4-bit codes. The blocks are read again
with the gguf package and put through transformers' own GGUF name map and tensor processor (the
Llama q/k row permutation, for one), then each Linear is swapped only when its blocks,
dequantized, equal the float weight transformers built bit for bit: a tensor mapped or permuted
differently than assumed here keeps its float weight (and becomes int8 later), never a wrong one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from llmserve.int4_cpu import GROUP_SIZE, Int4WeightOnlyLinear, fits_int4_kernel

log = logging.getLogger("llmserve.gguf_q4")

Q4_1_BLOCK_BYTES = 20  # float16 d, float16 m, 16 bytes of 32 four-bit codes


def split_q4_1(data: np.ndarray, rows: int, columns: int) -> tuple[np.ndarray, ...]:
    """Raw Q4_1 bytes of a [rows, columns] tensor -> (codes [rows, columns] uint8, d and m
    [rows, columns / 32] float32). A block's low nibbles are its first 16 codes."""
    blocks = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1, Q4_1_BLOCK_BYTES)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    packed = blocks[:, 4:]
    codes = np.concatenate([packed & 0x0F, packed >> 4], axis=1)
    groups = columns // GROUP_SIZE
    return codes.reshape(rows, columns), d.reshape(rows, groups), m.reshape(rows, groups)


def dequantize_q4_1(codes: np.ndarray, d: np.ndarray, m: np.ndarray) -> np.ndarray:
    """d * q + m in float32, the arithmetic of gguf-py's dequantize (which transformers uses)."""
    rows, columns = codes.shape
    q = codes.reshape(rows, -1, GROUP_SIZE).astype(np.float32)
    return (d[:, :, None] * q + m[:, :, None]).reshape(rows, columns)


def _gguf_parts(path: Path, model: nn.Module) -> dict[str, tuple[np.ndarray, ...]]:
    """Q4_1 parts of every Q4_1 tensor of `path` that maps to a model weight, by model name."""
    from gguf import GGMLQuantizationType, GGUFReader
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
    )

    reader = GGUFReader(path)
    field = reader.fields.get("general.architecture")
    architecture = field.contents() if field is not None else ""
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(
        config=model.config.to_dict()  # type: ignore[operator]
    )
    names = get_gguf_hf_weights_map(model, processor)
    parts: dict[str, tuple[np.ndarray, ...]] = {}
    for tensor in reader.tensors:
        if tensor.tensor_type != GGMLQuantizationType.Q4_1:
            continue
        columns, rows = (int(n) for n in tensor.shape)  # gguf lists the fastest dimension first
        split = split_q4_1(tensor.data, rows, columns)
        processed = []
        for part in split:  # the same processing transformers gives the float weight
            result = processor.process(weights=part, name=tensor.name, tensor_key_mapping=names)
            processed.append(np.asarray(result.weights))
            name = result.name
        if name in names:
            parts[names[name]] = tuple(processed)
    return parts


def swap_q4_1_linears(model: nn.Module, path: Path) -> list[str]:
    """Replace each nn.Linear whose weight is a verified Q4_1 tensor of `path` by an
    Int4WeightOnlyLinear; returns the replaced modules' names."""
    parts = _gguf_parts(path, model)
    swapped: list[str] = []
    for name, module in list(model.named_modules()):
        found = parts.get(f"{name}.weight")
        if not isinstance(module, nn.Linear) or found is None:
            continue
        codes, d, m = found
        weight = module.weight.detach()
        if tuple(codes.shape) != tuple(weight.shape) or not fits_int4_kernel(*codes.shape):
            log.info("keeping %s: shape %s does not fit the int4 kernel", name, codes.shape)
            continue
        if weight.dtype != torch.float32 or not np.array_equal(
            dequantize_q4_1(codes, d, m), weight.numpy()
        ):
            log.warning("keeping %s: its Q4_1 blocks do not reproduce the loaded weight", name)
            continue
        bias = None if module.bias is None else module.bias.detach()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Int4WeightOnlyLinear.from_q4_1(codes, d, m, bias))
        swapped.append(name)
    log.info("%d Linear layers kept as the file's Q4_1 blocks (int4)", len(swapped))
    return swapped

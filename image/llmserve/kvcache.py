"""The running batch's key/value cache: one transformers DynamicCache, rows left-padded to a
common length, plus the attention mask that hides the padding.

Requests join by concatenating their freshly prefilled rows (padding whichever side is shorter)
and leave by selecting the remaining rows; columns that are padding for every row are cut so a
long request that left does not make everybody pay for its length."""

from __future__ import annotations

import itertools

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from llmserve.host_to_device import to_device


class UnsupportedCacheError(RuntimeError):
    """The model's cache layers are not plain full-attention layers."""


def _layers(cache: DynamicCache) -> list[DynamicLayer]:
    for layer in cache.layers:
        if type(layer) is not DynamicLayer:
            raise UnsupportedCacheError(
                f"cache layer type {type(layer).__name__} (sliding window or quantized "
                "attention) is not supported by the continuous-batching engine; "
                "allowed: models with full attention only (DynamicLayer)"
            )
    return list(cache.layers)


def _left_pad(t: torch.Tensor, length: int) -> torch.Tensor:
    missing = length - t.shape[-2]
    if missing == 0:
        return t
    pad = t.new_zeros((*t.shape[:-2], missing, t.shape[-1]))
    return torch.cat([pad, t], dim=-2)


_versions = itertools.count(1)


class BatchCache:
    def __init__(self) -> None:
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [rows, length], 1 = real token
        # Padding columns per row, on the host (each row is padding, then only real tokens;
        # decoding adds none), so keep_rows finds the columns to cut without reading the mask
        # back from the GPU.
        self.pad: list[int] = []
        # New whenever the layers' tensors are replaced (rows join or leave, an eager step
        # grows them), unique across caches: graphs.py re-checks its buffers only then.
        self.version = next(_versions)

    def changed(self) -> None:
        self.version = next(_versions)

    @property
    def rows(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    @property
    def length(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    def append(self, cache: DynamicCache, mask: torch.Tensor) -> None:
        """Add rows prefilled on their own (same layer count, same device)."""
        self.changed()
        real = mask.sum(dim=1).tolist()  # joins follow a prefill, read back anyway
        if self.cache is None or self.mask is None:
            _layers(cache)
            self.cache, self.mask = cache, mask
            self.pad = [mask.shape[1] - n for n in real]
            return
        length = max(self.length, mask.shape[1])
        grown = length - self.length
        self.pad = [p + grown for p in self.pad] + [length - n for n in real]
        for mine, theirs in zip(_layers(self.cache), _layers(cache), strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, length), _left_pad(theirs.keys, length)])
            mine.values = torch.cat(
                [_left_pad(mine.values, length), _left_pad(theirs.values, length)]
            )
        self.mask = torch.cat(
            [
                _left_pad(self.mask.unsqueeze(-1), length).squeeze(-1),
                _left_pad(mask.unsqueeze(-1), length).squeeze(-1),
            ]
        )

    def keep_rows(self, keep: list[int]) -> torch.Tensor | None:
        """Keep these rows; returns their index on the device (None when none is kept), for
        whatever else is row by row."""
        if self.cache is None or self.mask is None:
            return None
        self.changed()
        if not keep:
            self.cache, self.mask, self.pad = None, None, []
            return None
        index = to_device(keep, self.mask.device, torch.long)
        pads = [self.pad[i] for i in keep]
        first_real = min(pads)
        self.pad = [p - first_real for p in pads]
        self.mask = self.mask[index, first_real:]
        for layer in _layers(self.cache):
            layer.keys = layer.keys[index, :, first_real:]
            layer.values = layer.values[index, :, first_real:]
        return index

    def row(self, row: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Copies of one row's keys and values without its padding: [1, heads, tokens, dim]
        per layer (prompt_reuse.py keeps them after the row has left)."""
        assert self.cache is not None
        pad = self.pad[row]
        return [
            (
                layer.keys[row : row + 1, :, pad:].clone(),
                layer.values[row : row + 1, :, pad:].clone(),
            )
            for layer in _layers(self.cache)
        ]

    def extend_mask(self) -> torch.Tensor:
        """The mask for one more decoded token per row (call before the decode forward)."""
        assert self.mask is not None
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.rows, 1))], dim=1)
        return self.mask

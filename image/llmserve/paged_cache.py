"""The paged KV cache's storage, and the cache object a model's forward writes into and reads.

Storage: per layer one key pool and one value pool [num_blocks, block_size, kv_heads, head_dim],
allocated once (the block manager, block_manager.py, decides which blocks a sequence owns). A
token at position p of a sequence lives in slot table[p // block_size] * block_size + p %
block_size of every layer's pools.

One forward covers some rows (sequences), each with some new tokens (a prompt or a chunk of it,
or the one token of a decode step), left-padded to a common query length. `PagedStepCache` is
what the transformers model gets as `cache`: its `update(keys, values, layer)` writes the new
tokens' keys/values into their slots and returns, for attention, each row's whole context
gathered from the pools into [rows, kv_heads, longest context, head_dim], so column j is
position j of every row. The 4D mask (`attention_mask`, which transformers passes through to the
attention function untouched) lets a query at position p see columns 0..p of its own row; padded
queries see column 0 only, so no attention row is empty (no NaN) and their outputs are dropped.

Why gather, not a paged kernel: it works with the model's own attention (sdpa, on the CPU and on
every GPU) with no kernel of our own, and it is exactly right. The cost is one copy of every
row's context per layer and step (about as many bytes again as attention itself reads). On a GPU
that copy is what to remove, and this module is where it goes: keep the pools and the slot
mapping, and instead of gathering, hand attention the pools and the block tables
(torch's flex_attention with a BlockMask built from the block tables and a paged score_mod, or a
paged decode kernel). What to measure on the H200 before choosing, against the padded engine's
CUDA graphs in the same run (bench/gpu_serve.sh shapes): decode tok/s at 1, 32 and 256 rows
x 128 in / 256 out; step time split into gather vs attention vs the rest (torch.profiler); the
largest batch each path holds in 80% of the memory; and flex_attention's compile time per
(rows, length) bucket, since graphs need fixed shapes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from llmserve.kvcache import UnsupportedCacheError


@dataclass(frozen=True)
class LayerShape:
    kv_heads: int
    key_dim: int
    value_dim: int


def probe_layer_shapes(model: Any) -> tuple[list[LayerShape], torch.dtype]:
    """Each layer's key/value shape as the model really makes them (one-token forward): read
    from the tensors, not the config, so any architecture the engine runs sizes right. Refuses
    models whose cache layers are not plain full attention."""
    device = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device), cache=cache)
    shapes = []
    for layer in cache.layers:
        if type(layer).__name__ != "DynamicLayer":
            raise UnsupportedCacheError(
                f"cache layer type {type(layer).__name__} (sliding window or quantized "
                "attention) is not supported by LLMSERVE_KV_CACHE=paged; allowed: models with "
                "full attention only (DynamicLayer)"
            )
        shapes.append(LayerShape(layer.keys.shape[1], layer.keys.shape[3], layer.values.shape[3]))
    return shapes, cache.layers[0].keys.dtype


def bytes_per_token(shapes: list[LayerShape], dtype: torch.dtype) -> int:
    size = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 1
    return sum(s.kv_heads * (s.key_dim + s.value_dim) for s in shapes) * size


class PagedKVPool:
    """Every layer's key and value pools."""

    def __init__(
        self,
        shapes: list[LayerShape],
        *,
        num_blocks: int,
        block_size: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.num_blocks, self.block_size = num_blocks, block_size
        self.keys = [
            torch.zeros((num_blocks, block_size, s.kv_heads, s.key_dim), dtype=dtype, device=device)
            for s in shapes
        ]
        self.values = [
            torch.zeros(
                (num_blocks, block_size, s.kv_heads, s.value_dim), dtype=dtype, device=device
            )
            for s in shapes
        ]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


@dataclass
class StepLayout:
    """Where one forward's tokens go and what they see (all on the model's device)."""

    write_rows: torch.Tensor  # [n] flat index (row * query_len + column) of each real query
    write_slots: torch.Tensor  # [n] its slot in the pools
    read_slots: torch.Tensor  # [rows, context] slot of each row's position j (0 past its end)
    mask: torch.Tensor  # [rows, 1, query_len, context] bool, True = attend
    positions: torch.Tensor  # [rows, query_len] position ids (0 for padding)


def plan_step(
    tables: list[list[int]],
    starts: list[int],
    counts: list[int],
    block_size: int,
    device: torch.device,
) -> StepLayout:
    """The layout of a forward in which row r writes `counts[r]` new tokens at positions
    starts[r].. (after its `starts[r]` cached ones), its queries left-padded to the longest."""
    rows = len(tables)
    query_len = max(counts)
    context = max(s + c for s, c in zip(starts, counts, strict=True))
    widest = max(len(t) for t in tables)
    table = torch.zeros((rows, widest), dtype=torch.long)
    for r, blocks in enumerate(tables):
        table[r, : len(blocks)] = torch.tensor(blocks, dtype=torch.long)
    start = torch.tensor(starts, dtype=torch.long).unsqueeze(1)
    count = torch.tensor(counts, dtype=torch.long).unsqueeze(1)
    column = torch.arange(query_len).unsqueeze(0)
    pad = query_len - count  # left padding of each row's queries
    real = column >= pad  # [rows, query_len]
    positions = torch.where(real, start + column - pad, 0)
    # Slots of every position 0..context-1 of each row (blocks past a row's table read block 0;
    # the mask hides them).
    j = torch.arange(context)
    block_index = (j // block_size).clamp(max=widest - 1).expand(rows, -1)
    read_slots = table.gather(1, block_index) * block_size + j % block_size
    write_slots = read_slots.gather(1, positions)[real]
    write_rows = (torch.arange(rows).unsqueeze(1) * query_len + column).expand(rows, -1)[real]
    mask = j.view(1, 1, context) <= positions.unsqueeze(2)  # causal, and inside the row
    mask &= real.unsqueeze(2) | (j == 0).view(1, 1, context)
    return StepLayout(
        write_rows=write_rows.to(device),
        write_slots=write_slots.to(device),
        read_slots=read_slots.to(device),
        mask=mask.unsqueeze(1).to(device),
        positions=positions.to(device),
    )


class PagedStepCache:
    """The `cache` of one forward: writes the new keys/values into their slots, returns each
    row's whole context for attention. Duck-typed like graphs.py's fixed cache: the models
    only call `update`."""

    def __init__(self, pool: PagedKVPool, layout: StepLayout) -> None:
        self.pool, self.layout = pool, layout

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        layer_idx: int,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            self._write_and_read(self.pool.keys[layer_idx], key_states),
            self._write_and_read(self.pool.values[layer_idx], value_states),
        )

    def _write_and_read(self, pool: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        layout = self.layout
        rows, heads, query_len, dim = states.shape
        slots = pool.view(-1, heads, dim)  # [num_blocks * block_size, heads, dim]
        new = states.transpose(1, 2).reshape(rows * query_len, heads, dim)
        slots.index_copy_(0, layout.write_slots, new.index_select(0, layout.write_rows))
        return slots[layout.read_slots].transpose(1, 2)  # [rows, heads, context, dim]


def pool_blocks(
    *,
    per_token_bytes: int,
    block_size: int,
    device: torch.device,
    max_batch: int,
    max_model_len: int,
    cache_tokens: int | None,
    gpu_memory_utilization: float,
) -> int:
    """How many blocks the pools get: `cache_tokens` when given (LLMSERVE_KV_CACHE_TOKENS);
    else on a GPU what is left of `gpu_memory_utilization` x its memory once the weights (and
    everything else already there) are in, as vLLM's --gpu-memory-utilization; else, on the
    CPU, the padded cache's ceiling (max batch x context, but room for one whole-context request
    even with a batch of one), at most a quarter of the RAM. At least
    one full-length request must fit, or the engine could never admit it."""
    if cache_tokens:
        tokens, source = cache_tokens, f"LLMSERVE_KV_CACHE_TOKENS={cache_tokens}"
    elif device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        budget = int(total * gpu_memory_utilization) - (total - free)
        tokens = max(0, budget) // per_token_bytes
        source = (
            f"LLMSERVE_GPU_MEMORY_UTILIZATION={gpu_memory_utilization} ({budget / 2**30:.2f} GiB "
            f"left for the cache of {total / 2**30:.1f} GiB)"
        )
    else:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        # one whole-context request at least (+1: its next token), however small the batch
        wanted = max(max_batch * max_model_len, max_model_len + 1)
        tokens = min(-(-wanted // block_size) * block_size, ram // 4 // per_token_bytes)
        source = (
            f"max batch x context ({max_batch} x {max_model_len}), at most a quarter of the "
            f"RAM ({ram / 2**30:.1f} GiB)"
        )
    blocks = tokens // block_size
    needed = -(-(max_model_len + 1) // block_size)
    if blocks < needed:
        raise ValueError(
            f"the paged KV cache gets {blocks} blocks of {block_size} tokens from {source}; "
            f"allowed: at least {needed} blocks ({needed * block_size} tokens), enough for one "
            f"request of the whole context (LLMSERVE_MAX_MODEL_LEN={max_model_len}): raise "
            "LLMSERVE_KV_CACHE_TOKENS or LLMSERVE_GPU_MEMORY_UTILIZATION, or lower "
            "LLMSERVE_MAX_MODEL_LEN"
        )
    return blocks

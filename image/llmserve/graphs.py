"""Decode steps replayed from captured CUDA graphs.

Why: at batch 1 a 6B model's decode step is hundreds of small kernel launches; eager PyTorch spends
~28 ms launching what the GPU reads in ~3 ms (12 GB of weights at 4.8 TB/s). A captured graph
replays the whole step with one launch. Graphs need fixed shapes and fixed addresses, so the
running batch's keys/values live here in fixed buffers [rows, kv heads, max_len, head dim], and
each step runs the graph for (rows rounded up to a power of two, length rounded up to a power
of two). Batches with more rows than the buffers hold stay eager.

The batch keeps its layout (kvcache.BatchCache: rows left-padded to one length): its layers are
made views of these buffers, so a step writes one column in place and no copy is needed; after a
request joins or leaves (BatchCache builds new tensors then) the rows are copied back in once.

On the CPU there are no graphs; one-row steps of a Llama model run cpu_decode.LlamaCpuStep over
the same buffers (attending over exactly the columns in use, not a length bucket), everything
else the model's forward.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.fx.experimental._config as fx_config

from llmserve.cpu_decode import LlamaCpuStep, llama_cpu_step
from llmserve.fusions import fuse_rms_norms
from llmserve.kvcache import BatchCache

log = logging.getLogger("llmserve.graphs")

MIN_LENGTH_BUCKET = 128
# Columns past the largest bucket. With them no bucket's view is the whole (contiguous) buffer,
# so every bucket has the same stride pattern and the compiled step is not recompiled for the
# last one (a stride guard); 16 keeps rows of the mask aligned for the attention kernels.
SLACK_COLUMNS = 16
MEMORY_FRACTION = 0.4  # of the GPU memory free after loading the model


def _bucket(n: int, floor: int, cap: int) -> int:
    size = floor
    while size < n:
        size *= 2
    return min(size, cap)


def _rows_that_fit(model: Any, max_len: int) -> int:
    """Rows whose fixed buffers take at most MEMORY_FRACTION of the GPU memory still free.

    Why: the buffers are allocated whole, up front; on a small GPU (a T4 holding a 6B model)
    fewer rows get graphs and larger batches simply run eagerly."""
    config = getattr(model, "config", None)
    device = next(model.parameters()).device
    if config is None or device.type != "cuda":
        return 1 << 30
    text = getattr(config, "text_config", None) or config
    layers = int(getattr(text, "num_hidden_layers", 0) or 0)
    heads = int(getattr(text, "num_attention_heads", 0) or 0)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or (text.hidden_size // max(heads, 1)))
    dtype_bytes = torch.finfo(next(model.parameters()).dtype).bits // 8
    per_row = 2 * layers * kv_heads * head_dim * (max_len + SLACK_COLUMNS) * dtype_bytes
    if per_row <= 0:
        return 0
    free, _total = torch.cuda.mem_get_info(device)
    return int(free * MEMORY_FRACTION // per_row)


class _FixedCache:
    """The model's cache interface over fixed buffers: write one column, attend over a window."""

    def __init__(
        self, keys: list[torch.Tensor], values: list[torch.Tensor], column: torch.Tensor
    ) -> None:
        self.keys, self.values, self.column = keys, values, column

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        layer_idx: int,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys.index_copy_(2, self.column, key_states)
        values.index_copy_(2, self.column, value_states)
        return keys, values


class GraphedDecoder:
    """Runs the decode step for batches of up to `max_rows` rows from fixed buffers."""

    def __init__(
        self,
        model: Any,
        *,
        max_rows: int,
        max_len: int,
        pad_token_id: int,
        use_cuda_graphs: bool,
        compile_step: bool = False,
        compile_backend: str = "inductor",
        fuse_norms: bool = True,
        lean_cpu_step: bool = True,
    ) -> None:
        self.model = model
        if use_cuda_graphs and fuse_norms:
            fuse_rms_norms(model)
        # torch.compile fuses the step's remaining small element-wise kernels (rotary, SiLU)
        # before capture. Only one-row steps are compiled: they are the launch-bound ones, and
        # batched steps compiled with dynamic shapes were measured slower on the H200 (256 rows:
        # 80.8 ms a step against 10.3 ms eager-captured; 368 s to compile; bench/RESULTS.md).
        # The length is dynamic, so one compilation serves every length bucket (each bucket is
        # still its own captured graph); see _forward for why that needs duck sizing off.
        self._step_model = (
            torch.compile(model, dynamic=True, backend=compile_backend) if compile_step else model
        )
        self.max_len = max_len
        self.max_rows = min(max_rows, _rows_that_fit(model, max_len))
        self.pad_token_id = pad_token_id
        self.use_cuda_graphs = use_cuda_graphs
        self.device = next(model.parameters()).device
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._pool: Any = None
        self.captures = 0
        rows = max(self.max_rows, 1)
        self._ids = torch.full((rows, 1), pad_token_id, dtype=torch.long, device=self.device)
        self._positions = torch.zeros((rows, 1), dtype=torch.long, device=self.device)
        # Host staging for each step's token ids and positions: pinned on a GPU, so the copy is
        # queued behind nothing and the CPU never waits for it. Two sets, used in turn: with
        # overlapped steps (engine.py) the next step is staged while the previous one's copy
        # may still wait in the stream, and must not overwrite what that copy reads.
        pinned = self.device.type == "cuda"
        self._staging = [
            (
                torch.zeros((rows, 1), dtype=torch.long, pin_memory=pinned),
                torch.zeros((rows, 1), dtype=torch.long, pin_memory=pinned),
            )
            for _ in range(2)
        ]
        self._steps = 0
        # (BatchCache.version, rows, length) the buffers last held: the per-layer check of
        # _adopt (two views per layer, ~1-2 ms a step for 28 layers) only runs after a change.
        self._adopted: tuple[int, int, int] | None = None
        self._column = torch.zeros((1,), dtype=torch.long, device=self.device)
        self._mask = torch.zeros(
            (rows, max_len + SLACK_COLUMNS), dtype=torch.bool, device=self.device
        )
        # On the CPU (never with CUDA graphs) one-row steps of a Llama model skip transformers'
        # forward: see cpu_decode.py.
        self._cpu_step: LlamaCpuStep | None = (
            llama_cpu_step(model, max_len + SLACK_COLUMNS)
            if lean_cpu_step and self.device.type == "cpu" and not use_cuda_graphs
            else None
        )

    def fits(self, rows: int, length: int) -> bool:
        """Whether a step over `rows` rows whose cache grows to `length` columns runs here."""
        return 0 < rows <= self.max_rows and length <= self.max_len

    def buffer_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._keys + self._values)

    def decode(
        self, batch: BatchCache, tokens: list[int] | torch.Tensor, positions: list[int]
    ) -> torch.Tensor:
        """One decode step for every row of `batch` (its last tokens at these positions);
        returns logits [rows, vocab]. `tokens` may be a tensor on the model's device (the last
        step's picks, not yet read back: engine.py's overlapped steps)."""
        assert batch.cache is not None
        rows, length = batch.rows, batch.length
        self._adopt(batch, rows, length)
        mask = batch.extend_mask()
        if rows == 1 and self._cpu_step is not None:
            token = int(tokens[0]) if isinstance(tokens, torch.Tensor) else tokens[0]
            logits = self._cpu_step(
                token, positions[0], self._keys, self._values, length, mask[0].bool()
            )
            self._point_layers(batch.cache.layers, rows, length + 1)
            self._adopted = (batch.version, rows, length + 1)
            return logits[:, -1, :]
        bucket_rows = _bucket(rows, 1, self._ids.shape[0])
        bucket_len = _bucket(length + 1, MIN_LENGTH_BUCKET, self.max_len)
        ids_host, positions_host = self._staging[self._steps % 2]
        self._steps += 1
        if isinstance(tokens, torch.Tensor):
            self._ids[:rows, 0].copy_(tokens)
            self._ids[rows:bucket_rows].fill_(self.pad_token_id)
        else:
            ids_host.numpy()[:rows, 0] = tokens
            ids_host.numpy()[rows:bucket_rows, 0] = self.pad_token_id
            self._ids[:bucket_rows].copy_(ids_host[:bucket_rows], non_blocking=True)
        positions_host.numpy()[:rows, 0] = positions
        positions_host.numpy()[rows:bucket_rows, 0] = 0
        self._positions[:bucket_rows].copy_(positions_host[:bucket_rows], non_blocking=True)
        self._column.fill_(length)
        self._mask[:bucket_rows, :bucket_len].zero_()
        self._mask[:rows, : length + 1].copy_(mask.bool())
        # Padding rows attend to the column they write, so no row is all-masked (no NaN).
        self._mask[rows:bucket_rows, length] = True
        logits = self._run(bucket_rows, bucket_len)[:rows, -1, :]
        self._point_layers(batch.cache.layers, rows, length + 1)
        self._adopted = (batch.version, rows, length + 1)
        return logits

    def precapture(self, batch: BatchCache) -> None:
        """Capture every (rows, length) bucket before serving, so no request waits for a capture
        (or a compilation). Uses `batch` (the engine's warm-up rows) for the buffers' shapes and
        leaves the buffers' rows as scratch: call it only while nothing is being served."""
        assert batch.cache is not None
        if not self._keys:
            self._allocate(batch.cache.layers)
        rows_buckets = sorted({_bucket(n, 1, self.max_rows) for n in range(1, self.max_rows + 1)})
        self._ids.fill_(self.pad_token_id)
        self._positions.zero_()
        self._column.fill_(0)
        self._mask.zero_()
        self._mask[:, 0] = True  # every row attends to the column it writes: no NaN
        lengths = self._length_buckets()
        for rows in rows_buckets:
            for length in lengths:
                self._run(rows, length)
        self._adopted = None  # the buffers' rows are scratch now
        log.info(
            "decode graphs ready: %d rows buckets x %d length buckets (%d captured)",
            len(rows_buckets),
            len(lengths),
            self.captures,
        )

    def compiled(self) -> bool:
        """Whether one-row steps run the torch.compile'd model (false after a failed capture)."""
        return self._step_model is not self.model

    # ------------------------------------------------------------------ internals

    def _length_buckets(self) -> list[int]:
        buckets = [_bucket(1, MIN_LENGTH_BUCKET, self.max_len)]
        while buckets[-1] < self.max_len:
            buckets.append(_bucket(buckets[-1] + 1, MIN_LENGTH_BUCKET, self.max_len))
        return buckets

    def _adopt(self, batch: BatchCache, rows: int, length: int) -> None:
        """Make the batch's layers views of the fixed buffers (copying rows in if they moved)."""
        layers = batch.cache.layers  # type: ignore[union-attr]
        if self._adopted == (batch.version, rows, length) and self._keys:
            return  # the layers are still the views the last step left
        if not self._keys:
            self._allocate(layers)
        for i, layer in enumerate(layers):
            for mine, theirs in ((self._keys[i], layer.keys), (self._values[i], layer.values)):
                view = mine[:rows, :, :length]
                if theirs.data_ptr() != view.data_ptr() or theirs.stride() != view.stride():
                    view.copy_(theirs)
        self._point_layers(layers, rows, length)

    def _point_layers(self, layers: list[Any], rows: int, length: int) -> None:
        """Make the cache layers views of the buffers' first rows and columns, so a step's
        in-place writes are the batch's cache without a copy."""
        for i, layer in enumerate(layers):
            layer.keys = self._keys[i][:rows, :, :length]
            layer.values = self._values[i][:rows, :, :length]

    def _allocate(self, layers: list[Any]) -> None:
        rows = self._ids.shape[0]
        for layer in layers:
            heads, dim_k = layer.keys.shape[1], layer.keys.shape[3]
            dim_v = layer.values.shape[3]
            columns = self.max_len + SLACK_COLUMNS
            self._keys.append(layer.keys.new_zeros((rows, heads, columns, dim_k)))
            self._values.append(layer.values.new_zeros((rows, heads, columns, dim_v)))
        log.info(
            "decode buffers for up to %d rows x %d tokens: %.2f GiB; CUDA graphs %s",
            rows,
            self.max_len,
            self.buffer_bytes() / 2**30,
            "on" if self.use_cuda_graphs else "off",
        )

    def _forward(self, rows: int, length: int) -> torch.Tensor:
        cache = _FixedCache(
            [k[:rows, :, :length] for k in self._keys],
            [v[:rows, :, :length] for v in self._values],
            self._column,
        )
        model = self._step_model if rows == 1 else self.model
        # Duck sizing would give the length the symbol of any other input dimension of the same
        # size (head_dim 128, hidden 4096 for ChatGLM2) and so pin it to that value: every such
        # bucket would recompile (minutes each for a 6B model).
        with fx_config.patch(use_duck_shape=False):
            out = model(
                input_ids=self._ids[:rows],
                attention_mask=self._mask[:rows, None, None, :length],
                position_ids=self._positions[:rows],
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        return out.logits

    def _run(self, rows: int, length: int) -> torch.Tensor:
        if not self.use_cuda_graphs:
            return self._forward(rows, length)
        captured = self._graphs.get((rows, length))
        if captured is None:
            try:
                captured = self._capture(rows, length)
            except Exception:
                if not self.compiled():  # a model that cannot be captured still serves
                    log.exception("CUDA graph capture failed; decoding eagerly from now on")
                    self.use_cuda_graphs = False
                    return self._forward(rows, length)
                log.exception("capturing the compiled step failed; capturing it uncompiled")
                self._step_model = self.model
                return self._run(rows, length)
        graph, logits = captured
        graph.replay()
        return logits

    def _capture(self, rows: int, length: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        # Warm-up runs compute exactly this step (same inputs, same column), so capturing in the
        # middle of serving leaves the cache as the step itself would.
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward(rows, length)
        torch.cuda.current_stream(self.device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            logits = self._forward(rows, length)
        self._graphs[(rows, length)] = (graph, logits)
        self.captures += 1
        log.info("captured decode graph for %d rows x %d tokens", rows, length)
        return graph, logits

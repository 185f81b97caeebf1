"""Quantize a loaded model's Linear layers in place: int8 weight-only or FP8.

Selected by LLMSERVE_QUANTIZATION (none | int8 | fp8).

Why: a decode step of one row reads every weight once, so its time is the weights' bytes over
memory bandwidth. One byte a weight instead of two halves that (ChatGLM2-6B: 12.4 GB of bf16
becomes ~6.5 GB, which is also what lets a 6B model run on an 11-12 GB card).

Both modes use torch's own kernels, no extra library:
- `int8`: symmetric per-output-channel int8 weights, activations stay bf16. On CUDA the
  dequantize-and-multiply `linear(x, w.to(bf16)) * scale` is compiled by Inductor with coordinate
  descent tuning, which turns a matrix-vector product into one fused reduction that reads the
  int8 weight directly (the gpt-fast recipe; torch/_inductor/decomposition.py, `mm`/`bmm`). On CPU
  it is `torch._weight_int8pack_mm`.
- `fp8`: e4m3 weights with per-output-channel scales, activations quantized per row at run time,
  one `torch._scaled_mm` (cuBLASLt/CUTLASS FP8 tensor cores). Needs compute capability >= 8.9.

Embeddings, norms and any Linear whose shape the kernels refuse stay in the model's dtype.

Measured on the H200 (torch 2.11, bench/gpu_quant.py, 2026-12-01), random:chatglm2-6b, graphed
one-row step without the whole-step compile: bf16 5.84 ms, int8 7.74 ms, fp8 8.93 ms per step —
both quantized modes are SLOWER there than cuBLAS bf16 (per-layer timings, launch overhead
included: the Inductor int8 kernel of a dynamic-shape compile and cuBLASLt FP8 at one row read
the gate_up weight at 450-650 GB/s, bf16 at ~2,900). The gpt-fast recipe (the whole step
compiled with coordinate descent tuning, compile_options("int8")) did not finish compiling
within 150 s and is unmeasured.
torch._weight_int8pack_mm on CUDA is correct but 5-50x slower than bf16 (a naive kernel).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

log = logging.getLogger("llmserve.quantization")

MODES = ("none", "int8", "fp8")
FP8_MIN_CAPABILITY = (8, 9)
# Inductor's GPU kernels are Triton's, and Triton needs compute capability 7.0 (Volta) or newer:
# older GPUs (P40, 1080Ti: 6.1) run the int8 layers' plain dequantize-and-multiply, uncompiled.
TRITON_MIN_CAPABILITY = (7, 0)
FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite float8_e4m3fn
INT8_MAX = 127.0

# Bytes per parameter of a quantized Linear's weight, for sizing memory
# (components/stack/capacity.py).
# Scales add one bf16 (int8) or fp32 (fp8) value per output channel: 2/K or 4/K bytes a
# parameter (K = in_features, 4096 for ChatGLM2), rounded up here to 1.01. Embeddings and norms
# keep the model dtype (2 bytes in bf16).
WEIGHT_BYTES_PER_PARAM = {"none": 2.0, "int8": 1.01, "fp8": 1.01}


class QuantizationError(ValueError):
    """LLMSERVE_QUANTIZATION cannot be honoured here; the message says why and what would work."""


def check_mode(mode: str, device: torch.device, capability: tuple[int, int] | None = None) -> None:
    """Refuse a mode this device cannot run, naming the setting and the allowed values."""
    if mode not in MODES:
        raise QuantizationError(
            f"LLMSERVE_QUANTIZATION={mode!r} is not a quantization mode; allowed: "
            + ", ".join(MODES)
        )
    if mode == "fp8" and device.type == "cuda":
        cc = capability or torch.cuda.get_device_capability(device)
        if tuple(cc) < FP8_MIN_CAPABILITY:
            raise QuantizationError(
                f"LLMSERVE_QUANTIZATION='fp8' needs a GPU of compute capability >= 8.9 (H20, "
                f"L20, 4090, H100, H200); this GPU is {cc[0]}.{cc[1]}; allowed here: none, int8"
            )
    if mode != "none" and device.type not in ("cuda", "cpu"):
        raise QuantizationError(
            f"LLMSERVE_QUANTIZATION={mode!r} runs on cuda or cpu, not "
            f"{device.type}; allowed here: none"
        )


def cpu_weights_for(mode: str, cpu_weights: str, device: torch.device) -> str:
    """Check `mode` for `device` and return the LLMSERVE_CPU_WEIGHTS the load follows.

    On the CPU the two settings name one thing: int8 means the CPU int8 weights (cpu_weights.py,
    converted once and cached; also for models it does not cache, quantized after loading), fp8
    means float weights quantized after loading, none leaves LLMSERVE_CPU_WEIGHTS in charge.
    A pair that asks for both int8 and float weights is refused. On CUDA cpu_weights is unused."""
    check_mode(mode, device)
    if device.type != "cpu" or mode == "none":
        return cpu_weights
    wanted = "int8" if mode == "int8" else "float"
    if cpu_weights not in ("auto", wanted):
        raise QuantizationError(
            f"LLMSERVE_QUANTIZATION={mode!r} on the CPU wants {wanted} weights to start from, "
            f"but LLMSERVE_CPU_WEIGHTS={cpu_weights!r}; allowed: LLMSERVE_CPU_WEIGHTS auto or "
            f"{wanted} with LLMSERVE_QUANTIZATION={mode!r}, or LLMSERVE_QUANTIZATION=none"
        )
    return wanted


def quantize_loaded(model: nn.Module, mode: str) -> int:
    """`quantize_model` for a model as loaded: a model already in int8 (the CPU weight cache)
    is left as it is; on the CPU, int8 layers take bfloat16 activations as that cache's do
    (Int8WeightOnlyLinear.use_bf16_on_cpu), so both int8 routes run the same kernel."""
    if mode == "none" or any(isinstance(m, Int8WeightOnlyLinear) for m in model.modules()):
        return 0
    replaced = quantize_model(model, mode)
    for module in model.modules():
        if isinstance(module, Int8WeightOnlyLinear) and module.weight.device.type == "cpu":
            module.use_bf16_on_cpu()
    return replaced


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: returns (int8 [N, K], float32 scale [N])."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / INT8_MAX).clamp(min=1e-12)
    q = torch.round(w / scale[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel e4m3: returns (float8 [N, K], float32 scale [N])."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / FP8_MAX).clamp(min=1e-12)
    q = (w / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale


def _int8_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return nn.functional.linear(x, weight.to(x.dtype)) * scale


_compiled_int8: Callable[..., torch.Tensor] | None = None


def _int8_linear_cuda(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # One compiled function for every shape (dynamic=True: the weights' shapes do not each cost
    # a recompilation); rows == 1 is specialised by torch anyway and gets the fused reduction.
    # Inside an already compiled model this is traced through, and the outer compile needs
    # coordinate_descent_tuning itself for the fused decode kernel (see compile_options()).
    global _compiled_int8
    if torch.compiler.is_compiling():  # an outer compile fuses the plain formula itself
        return _int8_linear(x, weight, scale)
    if _compiled_int8 is None:
        _compiled_int8 = torch.compile(_int8_linear, dynamic=True, options=compile_options("int8"))
    return _compiled_int8(x, weight, scale)


def compiles_int8(device: torch.device) -> bool:
    """Whether int8 layers on `device` run the compiled fused kernel (CUDA with Triton)."""
    if device.type != "cuda":
        return False
    return tuple(torch.cuda.get_device_capability(device)) >= TRITON_MIN_CAPABILITY


def compile_options(mode: str) -> dict[str, Any]:
    """Inductor options a torch.compile of a model quantized in `mode` should pass."""
    return {"coordinate_descent_tuning": True} if mode == "int8" else {}


class Int8WeightOnlyLinear(nn.Module):
    """y = x @ (int8 W * scale)^T + b, activations in the model's dtype."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        dtype = linear.weight.dtype
        q, scale = quantize_int8(linear.weight)
        self.register_buffer("weight", q)
        self.register_buffer("scale", scale.to(dtype))
        self.bias = (
            None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)
        )
        self.use_compile = compiles_int8(q.device)

    @classmethod
    def empty(cls, in_features: int, out_features: int, bias: bool) -> Int8WeightOnlyLinear:
        """A shell on the meta device whose tensors are assigned from a saved state dict (the
        CPU weight cache, cpu_weights.py): no float weight is ever built. Built directly, not
        by quantizing a meta weight: meta ops go through torch._refs, whose first use imports
        torch._dynamo (~1 s of a second start on the CPU)."""
        shell = cls.__new__(cls)
        nn.Module.__init__(shell)
        shell.in_features, shell.out_features = in_features, out_features
        meta = torch.device("meta")
        shell.register_buffer(
            "weight", torch.empty((out_features, in_features), dtype=torch.int8, device=meta)
        )
        shell.register_buffer("scale", torch.empty(out_features, device=meta))
        shell.bias = (
            nn.Parameter(torch.empty(out_features, device=meta), requires_grad=False)
            if bias
            else None
        )
        shell.use_compile = False  # as compiles_int8 says for the meta device
        return shell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2d = x.reshape(-1, self.in_features)
        if x2d.device.type == "cuda":
            y = (
                _int8_linear_cuda(x2d, self.weight, self.scale)
                if self.use_compile
                else _int8_linear(x2d, self.weight, self.scale)
            )
        else:  # CPU: torch's packed int8 kernel wants a contiguous 2-D input in the scale's dtype
            # (a bf16 scale is the fast one: see use_bf16_on_cpu)
            y = torch._weight_int8pack_mm(
                x2d.to(self.scale.dtype).contiguous(), self.weight, self.scale
            ).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)

    def use_bf16_on_cpu(self) -> None:
        """Feed the CPU kernel bfloat16 activations (the output is cast back). torch's
        `_weight_int8pack_mm` is vectorized for bf16 only: measured on the 2-core development
        Xeon (torch 2.13, [1, 576] x [1536, 576]), bf16 45 us, fp32 831 us, an fp32 nn.Linear
        171 us. Costs precision (bf16 activations), so only the CPU weight cache opts in."""
        self.scale = self.scale.to(torch.bfloat16)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Fp8Linear(nn.Module):
    """y = scaled_mm(fp8(x / sx), fp8 W) * sx * sw + b, with sx the per-row max of |x| / 448."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        q, scale = quantize_fp8(linear.weight)
        # _scaled_mm wants its second operand column-major: W^T of a row-major W is.
        self.register_buffer("weight", q)
        self.register_buffer("scale", scale[None, :].contiguous())  # [1, N] float32
        self.bias = (
            None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2d = x.reshape(-1, self.in_features)
        x_scale = (x2d.abs().amax(dim=1, keepdim=True).float() / FP8_MAX).clamp(min=1e-12)
        x_q = (x2d.float() / x_scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
        y = torch._scaled_mm(
            x_q, self.weight.t(), scale_a=x_scale, scale_b=self.scale, out_dtype=x.dtype
        )
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8 e4m3"


def _fits(mode: str, linear: nn.Linear) -> bool:
    if mode == "fp8":  # cuBLASLt FP8: both matrix dimensions of the weight a multiple of 16
        return linear.in_features % 16 == 0 and linear.out_features % 16 == 0
    if linear.weight.device.type == "cpu":
        # torch._weight_int8pack_mm on the CPU with bfloat16 activations reads K in blocks of
        # 16: any other K gives wrong results or crashes (measured, torch 2.13: K=856 returns
        # 1e33s, K=100 segfaults; float32 activations are right for K a multiple of 8 only).
        return linear.in_features % 16 == 0
    return True


def quantize_model(model: nn.Module, mode: str, *, skip: tuple[str, ...] = ()) -> int:
    """Replace every nn.Linear of `model` (names not ending in `skip`) by its `mode` version, in
    place, freeing the original weight as it goes; returns how many were replaced."""
    if mode == "none":
        return 0
    device = next(model.parameters()).device
    check_mode(mode, device)
    cls = Int8WeightOnlyLinear if mode == "int8" else Fp8Linear
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not name.endswith(skip)
    ]
    replaced = 0
    for name, linear in targets:
        if not _fits(mode, linear):
            log.info(
                "keeping %s in %s: shape %s does not fit the %s kernel",
                name,
                linear.weight.dtype,
                tuple(linear.weight.shape),
                mode,
            )
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        with torch.no_grad():
            setattr(parent, child, cls(linear))
        replaced += 1
    _untie(model)
    log.info("quantized %d Linear layers to %s", replaced, mode)
    return replaced


def _untie(model: nn.Module) -> None:
    """A tied lm_head that was quantized no longer shares the embedding's weight; make sure
    transformers does not re-tie it (tie_weights would put the float embedding back)."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "tie_word_embeddings", False):
        head = getattr(model, "lm_head", None)
        if isinstance(head, (Int8WeightOnlyLinear, Fp8Linear)):
            config.tie_word_embeddings = False


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer: what the weights take in device memory."""
    tensors = list(model.parameters()) + list(model.buffers())
    seen: set[int] = set()
    total = 0
    for tensor in tensors:
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    return total

"""4-bit weight-only Linears on the CPU, holding a GGUF file's Q4_1 blocks exactly.

Why: a Q4_1 block (32 weights along the input dimension) is w = d * q + m with q in 0..15, and
torch's CPU int4 kernel (`aten._weight_int4pack_mm_for_cpu`, the one torchao's int4
weight-only layout runs on the CPU) computes w = (q - 8) * scale + zero per group of 32, so
scale = d and zero = m + 8 d hold the file's own codes: no second rounding of the weights (the
int8 path re-quantizes the dequantized blocks per channel), half the bytes a decode step reads.
The kernel is vectorized for bfloat16 activations and scales only (fp32 is ~30x slower,
measured on the 2-core development Xeon, torch 2.13), so d and m + 8 d are rounded to bfloat16
and activations enter the matmul in bfloat16; the output is cast back to the model's dtype.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

GROUP_SIZE = 32  # a Q4_1 block
CODE_OFFSET = 8  # the kernel's (q - 8)
KERNEL_DTYPE = torch.bfloat16
N_MULTIPLE = 16  # _convert_weight_to_int4pack_for_cpu: "expect N to be dividable by 16"


def fits_int4_kernel(out_features: int, in_features: int) -> bool:
    return out_features % N_MULTIPLE == 0 and in_features % GROUP_SIZE == 0


class Int4WeightOnlyLinear(nn.Module):
    """y = x @ W^T + b with W = (q - 8) * scale + zero per group of 32 input features."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        weight: torch.Tensor,
        scales_and_zeros: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", weight)  # packed uint8, the kernel's layout
        self.register_buffer("scales_and_zeros", scales_and_zeros)  # [K / 32, N, 2] bfloat16
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    @classmethod
    def from_q4_1(
        cls,
        codes: np.ndarray,
        d: np.ndarray,
        m: np.ndarray,
        bias: torch.Tensor | None = None,
    ) -> Int4WeightOnlyLinear:
        """From Q4_1 parts: codes [N, K] in 0..15, d and m [N, K / 32] (float32)."""
        out_features, in_features = codes.shape
        if not fits_int4_kernel(out_features, in_features):
            raise ValueError(
                f"a {out_features}x{in_features} weight does not fit the int4 kernel: out "
                f"features must be a multiple of {N_MULTIPLE}, in features of {GROUP_SIZE}"
            )
        q = torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int32))
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        scale = torch.from_numpy(np.ascontiguousarray(d, dtype=np.float32))
        zero = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)) + CODE_OFFSET * scale
        scales_and_zeros = torch.stack([scale.t(), zero.t()], dim=-1).to(KERNEL_DTYPE)
        return cls(in_features, out_features, packed, scales_and_zeros.contiguous(), bias)

    @classmethod
    def empty(cls, in_features: int, out_features: int, bias: bool) -> Int4WeightOnlyLinear:
        """A shell on the meta device whose tensors are assigned from the CPU weight cache."""
        with torch.device("meta"):
            return cls(
                in_features,
                out_features,
                torch.empty((out_features, in_features // 2), dtype=torch.uint8),
                torch.empty((in_features // GROUP_SIZE, out_features, 2), dtype=KERNEL_DTYPE),
                torch.empty(out_features) if bias else None,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2d = x.reshape(-1, self.in_features).to(KERNEL_DTYPE).contiguous()
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x2d, self.weight, GROUP_SIZE, self.scales_and_zeros
        ).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 (Q4_1)"

"""Triton RMSNorm and LayerNorm written the common way: one program per row (grid = (rows,)).

Correct kernels (masked loads, fp32 inside, block = next power of two up to MAX_BLOCK, longer rows walked
in blocks). Under the CPU interpreter
(TRITON_INTERPRET=1) each program is run in Python, so many short rows are slow, not hung: the
audit predicts which inputs would exceed its timeout and does not run them.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import nn

#: The longest block a program holds (fp32 lanes); longer rows are walked in blocks of it, as Triton's
#: layer-norm tutorial does (a block of 131072 lanes takes minutes to compile for a GPU).
MAX_BLOCK = 8192


@triton.jit
def _row_norm_kernel(x_ptr, w_ptr, b_ptr, y_ptr, stride, n, eps, BLOCK: tl.constexpr, LAYERNORM: tl.constexpr):
    row = tl.program_id(0)
    x_row, y_row = x_ptr + row * stride, y_ptr + row * stride
    mean = 0.0
    if LAYERNORM:
        total = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, n, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            total += tl.load(x_row + cols, mask=cols < n, other=0.0).to(tl.float32)
        mean = tl.sum(total, axis=0) / n
    squares = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n
        d = tl.where(mask, tl.load(x_row + cols, mask=mask, other=0.0).to(tl.float32) - mean, 0.0)
        squares += d * d
    rstd = 1 / tl.sqrt(tl.sum(squares, axis=0) / n + eps)
    for start in range(0, n, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n
        x = tl.load(x_row + cols, mask=mask, other=0.0).to(tl.float32)
        y = (x - mean) * rstd * tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        if LAYERNORM:
            y = y + tl.load(b_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(y_row + cols, y, mask=mask)


def _launch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    n = x.shape[-1]
    x2 = x.reshape(-1, n).contiguous()
    # fp32 out, rounded once by torch: the interpreter stores fp32 into bfloat16 by truncation.
    y = torch.empty(x2.shape, dtype=torch.float32, device=x.device)
    b = weight if bias is None else bias
    block, layernorm = min(MAX_BLOCK, triton.next_power_of_2(n)), bias is not None
    _row_norm_kernel[(x2.shape[0],)](x2, weight, b, y, x2.stride(0), n, eps, BLOCK=block, LAYERNORM=layernorm)
    return y.to(x.dtype).reshape(x.shape)


class RowTritonRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return _launch(x, self.weight, None, self.eps)


class RowTritonLayerNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return _launch(x, self.weight, self.bias, self.eps)

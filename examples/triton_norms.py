"""Triton RMSNorm and LayerNorm forward kernels: a tile of rows per program, masked loads, long rows in blocks.

Run on CPU through the interpreter: ``TRITON_INTERPRET=1 python -m normcheck audit
examples/triton_norms.py:TritonRMSNorm --no-grad``. The ``bug`` argument switches on one of the
Triton-typical bugs the tests make the audit catch: ``"block_divisor"`` (divide by the block size,
not n), ``"padded_lanes"`` (padded lanes enter the variance), ``"no_upcast"`` (compute in the input
dtype), ``"one_pass"`` (LayerNorm variance as E[x^2] - E[x]^2).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import nn

BUGS = ("none", "block_divisor", "padded_lanes", "no_upcast", "one_pass")


#: Elements one program holds at a time: short rows are normalized several at a time (a block kernel), as
#: kernels for many short rows do; rows of 4096 and more get a program each, walked in blocks of 4096
#: (one block of 131072 lanes takes minutes to compile for a GPU).
TILE = 4096


@triton.jit
def _norm_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    y_ptr,
    stride,
    rows,
    n,
    eps,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    ACC: tl.constexpr,
    LAYERNORM: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BUG: tl.constexpr,
):
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]  # this program's rows, as a column
    x_rows, y_rows = x_ptr + r * stride, y_ptr + r * stride
    divisor = tl.cdiv(n, BLOCK) * BLOCK if BUG == 1 else n  # 1: divide by the padded length
    mean = 0.0
    if LAYERNORM:
        total = tl.zeros([ROWS, BLOCK], dtype=ACC)
        squares = tl.zeros([ROWS, BLOCK], dtype=ACC)
        for start in range(0, n, BLOCK):
            cols = start + tl.arange(0, BLOCK)[None, :]
            x = tl.load(x_rows + cols, mask=(cols < n) & (r < rows), other=0.0).to(ACC)
            total += x
            if BUG == 4:  # 4: one-pass variance, E[x^2] - E[x]^2
                squares += x * x
        mean = tl.sum(total, axis=1)[:, None] / divisor
        if BUG == 4:
            var = tl.sum(squares, axis=1)[:, None] / divisor - mean * mean
    if not LAYERNORM or BUG != 4:
        squares = tl.zeros([ROWS, BLOCK], dtype=ACC)
        for start in range(0, n, BLOCK):
            cols = start + tl.arange(0, BLOCK)[None, :]
            mask = (cols < n) & (r < rows)
            x = tl.load(x_rows + cols, mask=mask, other=0.0).to(ACC)
            if LAYERNORM:
                d = x - mean
                if BUG != 2:  # 2: padded lanes hold -mean and enter the variance
                    d = tl.where(mask, d, 0.0)
            elif BUG == 2:
                d = tl.where(mask, x, 1.0)  # padded lanes hold 1 and enter the mean square
            else:
                d = x
            squares += d * d
        var = tl.sum(squares, axis=1)[:, None] / divisor
    denominator = tl.sqrt(var + eps)
    for start in range(0, n, BLOCK):
        cols = start + tl.arange(0, BLOCK)[None, :]
        mask = (cols < n) & (r < rows)
        x = tl.load(x_rows + cols, mask=mask, other=0.0).to(ACC)
        y = (x - mean) / denominator if LAYERNORM else x / denominator
        y = y * tl.load(w_ptr + cols, mask=cols < n, other=0.0).to(y.dtype)
        if HAS_BIAS:
            y = y + tl.load(b_ptr + cols, mask=cols < n, other=0.0).to(y.dtype)
        tl.store(y_rows + cols, y.to(tl.float32), mask=mask)


#: What a program computes in: float32, or the input dtype itself (bug 3, no upcast).
NO_UPCAST = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


def _launch(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float, layernorm: bool, bug: str
) -> torch.Tensor:
    n = x.shape[-1]
    x2 = x.reshape(-1, n).contiguous()
    # The kernel writes fp32 and torch rounds once to the input dtype: TRITON_INTERPRET=1 stores
    # fp32 into a bfloat16 buffer by truncation (normcheck's audit names it: "truncating cast").
    y = torch.empty(x2.shape, dtype=torch.float32, device=x.device)
    block = min(TILE, triton.next_power_of_2(n))
    rows = TILE // block
    _norm_kernel[(triton.cdiv(x2.shape[0], rows),)](
        x2,
        weight,
        bias if bias is not None else weight,
        y,
        x2.stride(0),
        x2.shape[0],
        n,
        eps,
        ROWS=rows,
        BLOCK=block,
        ACC=NO_UPCAST.get(x.dtype, tl.float64) if bug == "no_upcast" else tl.float32,
        LAYERNORM=layernorm,
        HAS_BIAS=bias is not None,
        BUG=BUGS.index(bug),
    )
    return y.to(x.dtype).reshape(x.shape)


class TritonRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6, bug: str = "none") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps, self.bug = eps, bug

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return _launch(x, self.weight, None, self.eps, False, self.bug)


class TritonLayerNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-5, bug: str = "none") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        self.eps, self.bug = eps, bug

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return _launch(x, self.weight, self.bias, self.eps, True, self.bug)

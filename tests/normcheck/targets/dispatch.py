"""Norms that pick a code path by shape, the way GPU kernels do, and get one path wrong.

``BlockKernelRMSNorm`` follows Liger-Kernel's RMSNorm (before its fix): inputs of at
least ``MANY_ROWS`` rows with a hidden size of at most ``SHORT_ROWS`` take a block
kernel that sums the weight gradient in the parameter dtype (bfloat16 or float16:
one rounding per row added). Every other shape, and everything else it computes,
is correct (float32 throughout, cast once).
"""

from __future__ import annotations

import torch
from torch import nn

MANY_ROWS, SHORT_ROWS = 32768, 256


class _BlockKernelFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        xf = x.float()
        rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, rstd)
        return (xf * rstd * weight.float()).to(x.dtype)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, weight, rstd = ctx.saved_tensors
        n = x.shape[-1]
        xhat = x.float() * rstd
        h = g.float() * weight.float()
        dx = rstd * (h - xhat * (h * xhat).mean(-1, keepdim=True))
        per_row = (g.float() * xhat).reshape(-1, n)
        if per_row.shape[0] >= MANY_ROWS and n <= SHORT_ROWS:  # the block kernel's accumulator
            dw = torch.zeros(n, dtype=weight.dtype)
            for row in per_row:
                dw = (dw.float() + row).to(weight.dtype)
        else:
            dw = per_row.sum(0)
        return dx.to(x.dtype), dw.to(weight.dtype), None


class BlockKernelRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _BlockKernelFunction.apply(x, self.weight, self.eps)

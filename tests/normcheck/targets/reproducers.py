"""Implementations whose findings need a reproducer of a kind of their own.

Each is a correct all-fp32 RMSNorm except for the one fault its reproducer must show.
"""

from __future__ import annotations

import torch
from torch import nn

#: Inputs with at least this many rows (the audit's 32768x16 case) get a wrong y from WrongOnManyRows.
MANY = 32768


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)


class WrongOnManyRows(nn.Module):
    """y 1% too large on inputs of many rows, as a kernel whose multi-row block path is wrong: only a
    large input shows the fault, so its reproducer is a large one."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = rms(x, self.weight, self.eps)
        return y * 1.01 if x.numel() // x.shape[-1] >= MANY else y


class _NanFirstDx(torch.autograd.Function):
    """The norm's own gradients, but dx's first element NaN."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.eps = eps
        return rms(x, weight, eps)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        x, weight = ctx.saved_tensors
        with torch.enable_grad():
            xd, wd = x.detach().requires_grad_(), weight.detach().requires_grad_()
            dx, dw = torch.autograd.grad(rms(xd, wd, ctx.eps), (xd, wd), g)
        dx = dx.clone()
        dx.view(-1)[0] = float("nan")
        return dx, dw, None


class NanDxRMSNorm(nn.Module):
    """A correct forward whose backward writes NaN into the first element of dx."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _NanFirstDx.apply(x, self.weight, self.eps)

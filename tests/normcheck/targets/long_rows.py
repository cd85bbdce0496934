"""Norms whose long rows take another code path, the way multi-block kernels do, on the CPU.

Correct: float32 throughout, the row sums sequential (numpy's running sum), pairwise
(numpy's sum) or split into blocks of 1024 whose partial sums are added in turn.
Buggy past ``LONG`` only (a kernel's multi-block path): rstd stored in float16,
partial sums stored in bfloat16, or the mean stored in float16.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: Rows longer than this take the buggy implementations' other path.
LONG = 8192
BLOCK = 1024


def _blocked_sum(v: torch.Tensor) -> torch.Tensor:
    """Partial sums of BLOCK elements, added one after the other in float32 (autograd flows through)."""
    total = torch.zeros(*v.shape[:-1], 1, dtype=v.dtype)
    for start in range(0, v.shape[-1], BLOCK):
        total = total + v[..., start : start + BLOCK].sum(-1, keepdim=True)
    return total


class _Norm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps


class _NumpyRMSNorm(_Norm):
    """float32 in numpy: no autograd, so audited forward-only."""

    def row_sum(self, a: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.detach().float().numpy()
        ms = self.row_sum(xf * xf) / np.float32(x.shape[-1])
        y = xf * (np.float32(1) / np.sqrt(ms + np.float32(self.eps))) * self.weight.detach().float().numpy()
        return torch.from_numpy(y).to(x.dtype)


class SequentialRMSNorm(_NumpyRMSNorm):
    def row_sum(self, a: np.ndarray) -> np.ndarray:
        return np.cumsum(a, axis=-1, dtype=np.float32)[..., -1:]


class PairwiseRMSNorm(_NumpyRMSNorm):
    def row_sum(self, a: np.ndarray) -> np.ndarray:
        return np.sum(a, axis=-1, dtype=np.float32, keepdims=True)


class BlockedRMSNorm(_Norm):
    def rstd(self, xf: torch.Tensor) -> torch.Tensor:
        return torch.rsqrt(_blocked_sum(xf.pow(2)) / xf.shape[-1] + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * self.rstd(xf) * self.weight.float()).to(x.dtype)


class Fp16RstdOnLongRowsRMSNorm(BlockedRMSNorm):
    def rstd(self, xf: torch.Tensor) -> torch.Tensor:
        r = super().rstd(xf)
        return r.half().float() if xf.shape[-1] > LONG else r


class Bf16PartialsOnLongRowsRMSNorm(BlockedRMSNorm):
    """Past LONG a split reduction stores its per-block partial sums in bfloat16."""

    def rstd(self, xf: torch.Tensor) -> torch.Tensor:
        if xf.shape[-1] <= LONG:
            return super().rstd(xf)
        squares = torch.nn.functional.pad(xf.pow(2), (0, -xf.shape[-1] % BLOCK))
        parts = squares.reshape(*xf.shape[:-1], -1, BLOCK).sum(-1).to(torch.bfloat16).float()
        return torch.rsqrt(parts.sum(-1, keepdim=True) / xf.shape[-1] + self.eps)


class BlockedLayerNorm(_Norm):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__(dim, eps)
        self.bias = nn.Parameter(torch.zeros(dim))

    def centered(self, xf: torch.Tensor) -> torch.Tensor:
        return xf - _blocked_sum(xf) / xf.shape[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        d = self.centered(xf)
        r = torch.rsqrt(_blocked_sum(d.pow(2)) / xf.shape[-1] + self.eps)
        return (d * r * self.weight.float() + self.bias.float()).to(x.dtype)


class Fp16MeanOnLongRowsLayerNorm(BlockedLayerNorm):
    """Past LONG the mean is stored in float16 (and the rest computed as a plain two-pass LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] <= LONG:
            return super().forward(x)
        xf = x.float()
        d = xf - xf.mean(-1, keepdim=True).to(torch.float16).float()
        y = d * torch.rsqrt(d.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float() + self.bias.float()).to(x.dtype)


class Bf16StatisticOnManyRows(nn.Module):
    """Correct, except on batches of at least ``MANY_ROWS`` rows of ``WIDE`` or more (a kernel's other
    launch path), where it keeps the mean square in bfloat16. The default audit's many rows are
    narrower (32768 of 16) or fewer (512 of 64): it never reaches that path."""

    MANY_ROWS, WIDE = 1000, 64

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        ms = xf.pow(2).mean(-1, keepdim=True)
        if x.reshape(-1, x.shape[-1]).shape[0] >= self.MANY_ROWS and x.shape[-1] >= self.WIDE:
            ms = ms.bfloat16().float()
        return (xf * torch.rsqrt(ms + self.eps) * self.weight.float()).to(x.dtype)

"""Correct RMSNorms that take time per row, as a kernel with one program per row does under Triton's
CPU interpreter; one of them also hangs at one hidden size.

32768 rows (the default audit's many-rows input) take about 33 s: slow, not hung.
"""

from __future__ import annotations

import time

import torch
from torch import nn

#: Seconds each row costs.
ROW_SECONDS = 1e-3
#: The hidden size HangsOnOneSize never returns at: first reached by the audit's 64x4 inputs, after
#: longer rows whose calls predict they take milliseconds.
HANG = 64


class SlowRowsRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(ROW_SECONDS * (x.numel() // x.shape[-1]))
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()).to(x.dtype)


class HangsOnOneSize(SlowRowsRMSNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while x.shape[-1] == HANG:
            time.sleep(1)
        return super().forward(x)

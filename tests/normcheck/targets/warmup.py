"""Targets of the replay check's tests (tests/normcheck/test_replay.py)."""

from __future__ import annotations

from typing import ClassVar

import torch

#: Calls each instance answers right before it goes wrong.
WARM_CALLS = 30


class WarmThenZeroRMSNorm(torch.nn.Module):
    """A correct all-float32 RMSNorm for its first 30 calls, zeros after (a stale workspace, say)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(hidden_size))
        self.eps = eps
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h = x.float()
        y = (h * torch.rsqrt(h.square().mean(-1, keepdim=True) + self.eps) * self.weight.float()).to(x.dtype)
        return y if self.calls <= WARM_CALLS else y * 0


class CountingRMSNorm(torch.nn.RMSNorm):
    """torch's RMSNorm, counting its calls per instance; every instance is kept in ``INSTANCES``."""

    INSTANCES: ClassVar[list[CountingRMSNorm]] = []

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__(hidden_size, eps=eps)
        self.calls = 0
        CountingRMSNorm.INSTANCES.append(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x)


class CountingFusedAddRMSNorm(torch.nn.Module):
    """A correct fused residual-add + RMSNorm (the sum in float32), counting its calls per instance."""

    INSTANCES: ClassVar[list[CountingFusedAddRMSNorm]] = []

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(hidden_size))
        self.eps = eps
        self.calls = 0
        CountingFusedAddRMSNorm.INSTANCES.append(self)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        s = x.float() + residual.float()
        y = s * torch.rsqrt(s.square().mean(-1, keepdim=True) + self.eps) * self.weight.float()
        return y.to(x.dtype), s.to(x.dtype)

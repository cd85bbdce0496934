"""Targets loaded by file path in the CLI tests."""

import torch
from torch import nn


class NeedsConfig(nn.Module):
    """A constructor normcheck cannot satisfy."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(config["hidden"]))


def wrong_signature(a: int, b: int) -> int:
    return a + b


class GoodRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()).to(x.dtype)


class Crashes(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bfloat16:
            raise RuntimeError("bf16 is not supported by this kernel")
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps).to(x.dtype) * self.weight


class Hangs(nn.Module):
    """Never returns in time (sleeps in Python, so the alarm can interrupt it)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(30)
        return x

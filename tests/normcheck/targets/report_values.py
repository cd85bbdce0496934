"""Targets for the tests that read the audit report's values (tests/normcheck/test_report_values.py).

Each is an all-fp32 RMSNorm but for the one thing its name says.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

#: What :class:`CountingRMSNorm` was called with (run in-process): one key per distinct input.
SEEN: set[tuple] = set()
#: Elements of those inputs, per key.
SIZES: dict[tuple, int] = {}
#: Calls on the first row of an input seen before (the replay check's top-up), not in :data:`SEEN`.
PROBES: set[tuple] = set()
#: The keys the first rows of the inputs of more than one row would have.
_FIRST_ROWS: set[tuple] = set()


def _key(x: torch.Tensor, weight: torch.Tensor) -> tuple:
    digest = hashlib.sha256()
    for t in (x, weight):
        digest.update(t.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return (tuple(x.shape), str(x.dtype), digest.hexdigest())


def rms32(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()


class _Norm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps


class CountingRMSNorm(_Norm):
    """Correct; records every distinct input (x and weight, by their bits) it is called with in :data:`SEEN`, but
    the first rows of inputs seen before in :data:`PROBES`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = _key(x, self.weight)
        rows = x.reshape(-1, x.shape[-1])
        if len(rows) > 1:
            _FIRST_ROWS.add(_key(rows[:1], self.weight))
        if key in _FIRST_ROWS and key not in SEEN:
            PROBES.add(key)
        else:
            SEEN.add(key)
            SIZES[key] = x.numel()
        return rms32(x, self.weight, self.eps).to(x.dtype)


class HardcodedEpsRMSNorm(_Norm):
    """Takes an eps and keeps it, but computes with a literal 1e-6 (a kernel launched with the default eps)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms32(x, self.weight, 1e-6).to(x.dtype)


class RoundsUpRMSNorm(_Norm):
    """Rounds every output toward +infinity instead of to nearest: outputs are too large, never too small."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y32 = rms32(x, self.weight, self.eps)
        y = y32.to(x.dtype)
        up = torch.nextafter(y, torch.full_like(y, float("inf")))
        return torch.where(y.float() < y32, up, y)


class NoEpsLayerNorm(torch.nn.Module):
    """States no eps: its forward hard-codes 1e-5 and has no parameters (as OLMo's LayerNorm)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.normalized_shape = (hidden_size,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x.float(), self.normalized_shape, None, None, 1e-5).to(x.dtype)


class OddEpsRMSNorm(_Norm):
    """States no eps (its attribute has another name) and computes with 3.3e-6, which no one hard-codes."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__(hidden_size)
        del self.eps
        self.tiny = 3.3e-6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms32(x, self.weight, self.tiny).to(x.dtype)

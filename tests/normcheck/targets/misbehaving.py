"""Implementations that misbehave the way real kernels do: crash, hang in C, flake, write into their inputs.

Each computes a correct all-fp32 RMSNorm (or LayerNorm) when it does not misbehave,
so that the audit's only findings are the misbehaviour under test.
"""

from __future__ import annotations

import ctypes
import hashlib
import os

import torch
import torch.nn.functional as F
from torch import nn

#: Rows at least this long make the "...OnLongRows" implementations misbehave (the 4097 cases do).
LONG = 4000


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)


class _Norm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.misbehave(x)
        return rms(x, self.weight, self.eps)

    def misbehave(self, x: torch.Tensor) -> None:
        """What goes wrong, before a correct result."""


class SegfaultsOnLongRows(_Norm):
    """Reads through a null pointer on long rows, as an out-of-bounds kernel does."""

    def misbehave(self, x: torch.Tensor) -> None:
        if x.shape[-1] >= LONG:
            ctypes.string_at(0)


class AbortsOnLongRows(_Norm):
    """``abort()`` from C (a failed assertion in an extension)."""

    def misbehave(self, x: torch.Tensor) -> None:
        if x.shape[-1] >= LONG:
            os.abort()


class ExitsOnLongRows(_Norm):
    """Ends the process in the middle of a forward pass (``exit(3)`` from C, no Python cleanup)."""

    def misbehave(self, x: torch.Tensor) -> None:
        if x.shape[-1] >= LONG:
            os._exit(3)


class HangsInCOnLongRows(_Norm):
    """Spins inside one C call that never returns to the interpreter (no signal can interrupt it)."""

    def misbehave(self, x: torch.Tensor) -> None:
        if x.shape[-1] >= LONG:
            hashlib.pbkdf2_hmac("sha256", b"normcheck", b"salt", 2**31 - 1)  # minutes


class AlwaysHangsInC(_Norm):
    """Never returns, at any size."""

    def misbehave(self, x: torch.Tensor) -> None:
        hashlib.pbkdf2_hmac("sha256", b"normcheck", b"salt", 2**31 - 1)  # minutes


class FlakyRMSNorm(_Norm):
    """Wrong on one call in three, like a race in a reduction."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        FlakyRMSNorm.calls += 1
        y = rms(x, self.weight, self.eps)
        return y * 1.0625 if FlakyRMSNorm.calls % 3 == 0 else y


class _ZeroTheGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = grad.clone()
        grad.zero_()  # reuses the caller's buffer as scratch space
        return out


class WritesIntoGradOutput(_Norm):
    """Right values and gradients, but its backward overwrites the incoming ``grad_output``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ZeroTheGradient.apply(rms(x, self.weight, self.eps))


class SumRMSNorm(_Norm):
    """Divides by nothing: ``sum`` where ``mean`` belongs. Neither RMSNorm nor LayerNorm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).sum(-1, keepdim=True) + self.eps) * self.weight.float()).to(x.dtype)


class HardCodedEpsLayerNorm(nn.Module):
    """OLMo's LayerNorm: no parameters, no eps attribute, eps written into ``forward``."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.normalized_shape = (hidden_size,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, None, None, eps=1e-5).to(x.dtype)


class _Shrink(_Norm):
    """All-fp32, but the fp32 result is scaled by ``factor`` per channel before the one rounding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()
        return (y * self.factor(x.shape[-1])).to(x.dtype)

    def factor(self, n: int) -> torch.Tensor:
        raise NotImplementedError


class TowardZeroRMSNorm(_Shrink):
    """Shrinks every output by 2**-10 before rounding: biased toward zero by a fraction of a bf16 ulp."""

    def factor(self, n: int) -> torch.Tensor:
        return torch.full((n,), 1 - 2.0**-10)


class OneChannelDriftRMSNorm(_Shrink):
    """Channel 5 is scaled by 1 + 3 * 2**-11 (about a third of a bf16 ulp): a per-channel drift, like a
    rounded weight offset, too small for any one output to leave the accuracy bound."""

    def factor(self, n: int) -> torch.Tensor:
        f = torch.ones(n)
        f[5 % n] += 3 * 2.0**-11
        return f

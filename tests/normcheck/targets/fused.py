"""Fused residual-add + RMSNorm implementations, correct in both conventions and styles, and buggy ones.

Correct: the sum rounded to the input dtype first (the unfused composition: transformers, vLLM's
native path), or kept in float32 (a fused kernel); results returned as ``(y, residual_out)`` or
written in place (vLLM's ``fused_add_rms_norm``: x becomes y, residual becomes x + residual).
"""

from __future__ import annotations

import torch
from torch import nn


def _normalize(s: torch.Tensor, weight: torch.Tensor, eps: float, dtype: torch.dtype) -> torch.Tensor:
    """All-fp32 RMSNorm of ``s``, cast once."""
    sf = s.float()
    return (sf * torch.rsqrt(sf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(dtype)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6):
    """The unfused composition: ``residual = x + residual`` in the input dtype, then the norm of it."""
    s = x + residual
    return _normalize(s, weight, eps, x.dtype), s


class FusedAddRMSNorm(nn.Module):
    """A fused kernel's arithmetic: the sum kept in float32 for the norm, rounded once for residual_out."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor, residual: torch.Tensor):
        s = x.float() + residual.float()
        return _normalize(s, self.weight, self.eps, x.dtype), s.to(x.dtype)


class FusedAddLlamaRMSNorm(FusedAddRMSNorm):
    """The sum kept in float32, then Llama's cast order: xhat cast to the input dtype, times the weight in it
    (autograd rounds ``grad * weight`` and the cast's gradient in that dtype: intermediate roundings)."""

    def forward(self, x: torch.Tensor, residual: torch.Tensor):
        s = x.float() + residual.float()
        xhat = s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight.to(x.dtype) * xhat.to(x.dtype), s.to(x.dtype)


@torch.no_grad()
def fused_add_rms_norm_(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> None:
    """vLLM's in-place convention: residual becomes x + residual, x its norm."""
    residual.add_(x)
    x.copy_(_normalize(residual, weight, eps, x.dtype))


def add_rms_norm_in_input_dtype(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6):
    """Bug: the variance of the sum reduced in the input dtype, no fp32 upcast (SGLang's bf16 variance)."""
    s = x + residual
    return s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + eps) * weight.to(x.dtype), s


@torch.no_grad()
def fused_add_rms_norm_swapped_(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6):
    """Bug: in place, but the sum lands in x and the norm in residual."""
    s = x + residual
    residual.copy_(_normalize(s, weight, eps, x.dtype))
    x.copy_(s)


def add_rms_norm_one_output(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6):
    """Misuse: returns only y, and writes nothing."""
    return _normalize(x + residual, weight, eps, x.dtype)

"""Norms built the ways transformers' norm classes build themselves (the class each imitates is named in
its docstring), each correct or with one bug."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EpsOnlyRMSNorm(nn.Module):
    """No weight and no hidden size: the constructor takes only eps (NanoChatRMSNorm)."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x)


class ShapeLayerNorm(nn.LayerNorm):
    """Takes its hidden size as a shape and normalizes over its last entry (as ChameleonLayerNorm; in float32)."""

    def __init__(self, hidden_size: tuple[int, ...], *args: object, **kwargs: object) -> None:
        super().__init__(hidden_size, *args, **kwargs)
        self.normalized_shape = (hidden_size[-1],)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.float(), self.normalized_shape, None, None, eps=self.eps)
        return (y * self.weight.float() + self.bias.float()).to(x.dtype)


class WrappedUnitOffsetLayerNorm(nn.Module):
    """Wraps an affine-free nn.LayerNorm (the eps is the child's) and scales by ``gamma + 1`` in the input
    dtype: the offset is rounded to half precision (MoonshineStreamingLayerNorm)."""

    def __init__(self, dim: int, unit_offset: bool = True) -> None:
        super().__init__()
        self.unit_offset = float(unit_offset)
        self.ln = nn.LayerNorm(dim, eps=1e-3, elementwise_affine=False)
        self.gamma = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x) * (self.gamma + self.unit_offset)


class Float32LayerNorm(nn.LayerNorm):
    """Computes in float32 with its weight and bias kept in float32 (EsmFold2LayerNorm): half-precision
    parameters make F.layer_norm raise "mixed dtype"."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)

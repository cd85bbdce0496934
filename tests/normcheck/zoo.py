"""A zoo of RMSNorm and LayerNorm implementations written the way third-party code writes them.

``CORRECT`` must pass every audit; each entry of ``BUGGY`` carries one bug class
of docs/theory.md, section 5, and the name the diagnosis must give it.
"""

from __future__ import annotations

import torch
from torch import nn

# -- correct conventions -----------------------------------------------------


class LlamaRMSNorm(nn.Module):
    """transformers' Llama: normalize in fp32, cast, multiply by the weight in the input dtype."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class GemmaRMSNorm(nn.Module):
    """Gemma: scale by (1 + weight), everything in fp32, cast at the end."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self._norm(x.float())
        output = output * (1.0 + self.weight.float())
        return output.type_as(x)


class T5LayerNorm(nn.Module):
    """T5: variance in fp32, no mean subtraction, output cast to the weight dtype."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        if self.weight.dtype in [torch.float16, torch.bfloat16]:
            hidden_states = hidden_states.to(self.weight.dtype)
        return self.weight * hidden_states


class MiniMindFixedRMSNorm(nn.Module):
    """MiniMind after bf81fd5: ``self._norm(x.float()).type_as(x)``."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * self._norm(x.float()).type_as(x)


class TwoPassLayerNorm(nn.Module):
    """A hand-written LayerNorm: two-pass variance in fp32, affine in fp32."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        mean = xf.mean(-1, keepdim=True)
        var = (xf - mean).pow(2).mean(-1, keepdim=True)
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        return (y * self.weight.float() + self.bias.float()).to(x.dtype)


class CastApartLayerNorm(TwoPassLayerNorm):
    """Flax's order: statistics from one fp32 cast of x, ``x - mean`` from another, times ``rstd * w`` (autograd
    rounds the two casts' gradients to the input dtype apart: an error far above all-fp32's on offset rows)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = x.float()
        mean = stats.mean(-1, keepdim=True)
        var = (stats - mean).pow(2).mean(-1, keepdim=True)
        y = (x.float() - mean) * (torch.rsqrt(var + self.eps) * self.weight.float())
        return (y + self.bias.float()).to(x.dtype)


def functional_rms(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """A plain function in the DeepSeek style: all fp32, one cast."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)


def numpy_rms(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Correct, but computed in numpy: no autograd, so it is audited forward-only."""
    import numpy as np

    xf = x.detach().float().numpy()
    y = xf / np.sqrt(np.mean(xf * xf, axis=-1, keepdims=True) + np.float32(eps)) * weight.detach().float().numpy()
    return torch.from_numpy(y).to(x.dtype)


# -- buggy implementations ---------------------------------------------------


class MiniMindRMSNorm(nn.Module):
    """MiniMind between 58e3af0 and bf81fd5: normalizes in the input dtype (missing fp32 upcast)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class EpsOutsideRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (self.weight.float() * xf / (xf.pow(2).mean(-1, keepdim=True).sqrt() + self.eps)).to(x.dtype)


class EpsInInputDtypeRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = torch.tensor(self.eps, dtype=x.dtype)
        xf = x.float()
        r = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps.float())
        return (self.weight.float() * xf * r).to(x.dtype)


class LowPrecisionRstdRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps).to(torch.bfloat16)
        return (self.weight.float() * xf * rstd.float()).to(x.dtype)


class GemmaOffsetInLowPrecision(nn.Module):
    """vllm PR #29810 / llama.cpp PR #5810: (1 + w) computed in the weight dtype."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * (1 + self.weight).float()).to(x.dtype)


class TruncatingRMSNorm(nn.Module):
    """aiter #5151 style: the final fp32 -> low precision cast truncates toward zero."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y32 = self.weight.float() * xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        if x.dtype == torch.bfloat16:
            return (y32.view(torch.int32) & ~0xFFFF).view(torch.float32).to(torch.bfloat16)
        y = y32.to(x.dtype)
        return torch.where(y.float().abs() > y32.abs(), torch.nextafter(y, torch.zeros_like(y)), y)


class BlockDivisorRMSNorm(nn.Module):
    """A Triton-port bug: the mean of squares divides by the padded block size."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block = 1 << max(0, (x.shape[-1] - 1).bit_length())
        xf = x.float()
        r = torch.rsqrt(xf.pow(2).sum(-1, keepdim=True) / block + self.eps)
        return (self.weight.float() * xf * r).to(x.dtype)


class DetachedRstdRMSNorm(nn.Module):
    """A wrong gradient: the statistic is detached from the graph."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        r = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps).detach()
        return (self.weight.float() * xf * r).to(x.dtype)


class MutatingRMSNorm(nn.Module):
    """Right values and gradients, but normalizes "in place": the caller's tensor is overwritten."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.to(torch.float32, copy=True)  # autograd keeps this copy, not x
        y = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()).to(x.dtype)
        with torch.no_grad():
            x.copy_(y)
        return y


class NondeterministicRMSNorm(nn.Module):
    """Sums in a different order on each call, like a reduction with atomics."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        self.calls += 1
        r = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.calls % 2:  # another summation order: the last bit of the statistic changes
            r = torch.nextafter(r, torch.full_like(r, float("inf")))
        return (self.weight.float() * xf * r).to(x.dtype)


class UnbiasedLayerNorm(nn.Module):
    """annotated-transformer PR #119: the variance divides by n - 1 (``x.std(-1)``)."""

    def __init__(self, features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.a_2 = nn.Parameter(torch.ones(features))
        self.b_2 = nn.Parameter(torch.zeros(features))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        mean = xf.mean(-1, keepdim=True)
        var = xf.var(-1, keepdim=True, unbiased=True)
        return (self.a_2.float() * (xf - mean) * torch.rsqrt(var + self.eps) + self.b_2.float()).to(x.dtype)


class OnePassLayerNorm(nn.Module):
    """onnxruntime #21935 style: var = E[x^2] - E[x]^2."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        mean = xf.mean(-1, keepdim=True)
        var = xf.pow(2).mean(-1, keepdim=True) - mean * mean
        return ((xf - mean) * torch.rsqrt(var + self.eps) * self.weight.float() + self.bias.float()).to(x.dtype)


class NoUpcastLayerNorm(nn.Module):
    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        var = (x - mean).pow(2).mean(-1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class DetachedMeanLayerNorm(nn.Module):
    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        mean = xf.mean(-1, keepdim=True).detach()
        var = (xf - mean).pow(2).mean(-1, keepdim=True)
        return ((xf - mean) * torch.rsqrt(var + self.eps) * self.weight.float() + self.bias.float()).to(x.dtype)


#: target, kind, weight offset. (torch.nn.LayerNorm is not here: on CPU, torch 2.13 sums LayerNorm's
#: weight and bias gradients in the half dtype, a finding the audit reports; see README.)
CORRECT = [
    ("torch.nn.RMSNorm", "rmsnorm", 0),
    ("torch.nn.functional.rms_norm", "rmsnorm", 0),
    ("tests.normcheck.zoo:LlamaRMSNorm", "rmsnorm", 0),
    ("tests.normcheck.zoo:GemmaRMSNorm", "rmsnorm", 1),
    ("tests.normcheck.zoo:T5LayerNorm", "rmsnorm", 0),
    ("tests.normcheck.zoo:MiniMindFixedRMSNorm", "rmsnorm", 0),
    ("tests.normcheck.zoo:TwoPassLayerNorm", "layernorm", 0),
    ("tests.normcheck.zoo:CastApartLayerNorm", "layernorm", 0),
    ("tests.normcheck.zoo:functional_rms", "rmsnorm", 0),
]

#: The correct implementations that also compute float64 inputs in float64 (the others upcast with
#: ``x.float()``, which for float64 is a downcast: they are fp32 implementations, and fail fp64 audits).
FLOAT64_CAPABLE = {"torch.nn.RMSNorm", "torch.nn.functional.rms_norm"}

#: target, kind, weight offset, the finding check, the bug class the diagnosis must name (None: not an accuracy bug)
BUGGY = [
    ("tests.normcheck.zoo:MiniMindRMSNorm", "rmsnorm", 0, "missing fp32 upcast"),
    ("tests.normcheck.zoo:EpsOutsideRMSNorm", "rmsnorm", 0, "eps outside sqrt"),
    ("tests.normcheck.zoo:EpsInInputDtypeRMSNorm", "rmsnorm", 0, "eps rounded to input dtype"),
    ("tests.normcheck.zoo:LowPrecisionRstdRMSNorm", "rmsnorm", 0, "low-precision statistic"),
    ("tests.normcheck.zoo:GemmaOffsetInLowPrecision", "rmsnorm", 1, "weight offset in low precision"),
    ("tests.normcheck.zoo:TruncatingRMSNorm", "rmsnorm", 0, "truncating cast"),
    ("tests.normcheck.zoo:BlockDivisorRMSNorm", "rmsnorm", 0, "padding / block-size divisor"),
    ("tests.normcheck.zoo:DetachedRstdRMSNorm", "rmsnorm", 0, "wrong gradient (detached statistic)"),
    ("tests.normcheck.zoo:MutatingRMSNorm", "rmsnorm", 0, "mutation"),
    ("tests.normcheck.zoo:NondeterministicRMSNorm", "rmsnorm", 0, "nondeterminism"),
    ("tests.normcheck.zoo:UnbiasedLayerNorm", "layernorm", 0, "unbiased variance"),
    ("tests.normcheck.zoo:OnePassLayerNorm", "layernorm", 0, "one-pass variance"),
    ("tests.normcheck.zoo:NoUpcastLayerNorm", "layernorm", 0, "missing fp32 upcast"),
    ("tests.normcheck.zoo:DetachedMeanLayerNorm", "layernorm", 0, "wrong gradient (detached mean)"),
]

"""RMSNorm fused with output quantization, written the way inference engines write their torch reference paths
(vLLM's ``tests/kernels/quantization`` references: an RMSNorm in the input dtype, then a per-token or static
quantizer), for ``normcheck audit ... --quant``.

    python -m normcheck audit examples/quantized_norms.py:rms_norm_dynamic_per_token_fp8 --quant float8_e4m3fn
"""

from __future__ import annotations

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max
INT8_MAX = 127.0


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """The reference RMSNorm: variance in float32, normalized in float32, cast to the input dtype, times the
    weight."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return y.to(x.dtype) * weight


def per_token_quant(
    y: torch.Tensor, dtype: torch.dtype, top: float, group: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic quantization per token (or per ``group`` channels): ``scale = max(amax / top, 1 / (top * 512))``
    in float32 (vLLM's minimum scale), values ``y * (1 / scale)`` saturated; returns ``(q, scales)``."""
    yf = y.float()
    blocks = yf.unflatten(-1, (-1, group)) if group else yf.unsqueeze(-2)
    scales = (blocks.abs().amax(dim=-1) / top).clamp(min=1 / (top * 512))
    inverse = (1.0 / scales).repeat_interleave(blocks.shape[-1], dim=-1)
    v = (yf * inverse).clamp(-top, top)
    return (v.round() if dtype == torch.int8 else v).to(dtype), scales


def rms_norm_dynamic_per_token_fp8(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6):
    """vLLM's ``rms_norm_dynamic_per_token_quant`` reference, FP8 (float8_e4m3fn)."""
    return per_token_quant(rms_norm(x, weight, eps), FP8, FP8_MAX)


def rms_norm_dynamic_per_token_int8(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6):
    """The same into symmetric int8 (round half to even, saturating at +-127)."""
    return per_token_quant(rms_norm(x, weight, eps), torch.int8, INT8_MAX)


def rms_norm_per_group128_fp8(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6):
    """Per-token-group FP8 (groups of 128 channels, float32 scales: DeepSeek-style block FP8)."""
    return per_token_quant(rms_norm(x, weight, eps), FP8, FP8_MAX, group=128)


def rms_norm_static_fp8(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, scale: torch.Tensor | None = None):
    """vLLM's ``rms_norm_static_fp8_quant`` reference: ``(y / scale)`` saturated into FP8."""
    assert scale is not None, "a static quantizer is called with its scale"
    return (rms_norm(x, weight, eps).float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)

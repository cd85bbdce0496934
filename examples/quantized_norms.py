"""RMSNorm fused with output quantization, written the way inference engines write their torch reference paths
(vLLM's ``tests/kernels/quantization`` references: an RMSNorm in the input dtype, then a per-token or static
quantizer), for ``normcheck audit ... --quant``.

    python -m normcheck audit examples/quantized_norms.py:rms_norm_dynamic_per_token_fp8 --quant float8_e4m3fn
    python -m normcheck audit examples/quantized_norms.py:rms_norm_nvfp4 --quant nvfp4
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


def fused_add_rms_norm_dynamic_per_token_fp8(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """vLLM's ``rms_norm_dynamic_per_token_quant`` with a residual, as its reference writes it: the sum in the
    input dtype, its RMSNorm, then per-token FP8; returns ``(q, scales, residual_out)``."""
    total = x + residual
    q, scales = per_token_quant(rms_norm(total, weight, eps), FP8, FP8_MAX)
    return q, scales, total


def rms_norm_per_group128_fp8(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6):
    """Per-token-group FP8 (groups of 128 channels, float32 scales: DeepSeek-style block FP8)."""
    return per_token_quant(rms_norm(x, weight, eps), FP8, FP8_MAX, group=128)


def rms_norm_static_fp8(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, scale: torch.Tensor | None = None):
    """vLLM's ``rms_norm_static_fp8_quant`` reference: ``(y / scale)`` saturated into FP8."""
    assert scale is not None, "a static quantizer is called with its scale"
    return (rms_norm(x, weight, eps).float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)


#: E2M1's magnitudes by code (0..7; bit 3 is the sign) and the thresholds vLLM's ``cast_to_fp4`` rounds by:
#: a value up to 0.25 becomes 0, below 0.75 becomes 0.5, up to 1.25 becomes 1, ... (ties to the even code).
E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
E2M1_UPPER = ((0.25, True), (0.75, False), (1.25, True), (1.75, False), (2.5, True), (3.5, False), (5.0, True))
NVFP4_BLOCK = 16


def cast_to_fp4_codes(v: torch.Tensor) -> torch.Tensor:
    """Float32 values (already within +-6) into E2M1 codes (uint8), by the thresholds of ``E2M1_UPPER``: a code
    rises past a threshold (on an inclusive one, only beyond it)."""
    a = v.abs()
    code = torch.zeros_like(a, dtype=torch.uint8)
    for threshold, inclusive in E2M1_UPPER:
        code += (a > threshold) if inclusive else (a >= threshold)
    return (code + 8 * (v < 0)).to(torch.uint8)


def rms_norm_nvfp4(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, global_scale: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """vLLM's NVFP4 reference (``ref_nvfp4_quant``) after the reference RMSNorm: per block of 16,
    ``s = e4m3(min(g * amax / 6, 448))``, values ``y * (1 / (s * (1 / g)))`` clamped to +-6 and cast to E2M1,
    packed two to a byte (the first element in the low nibble); returns ``(q, scales)`` with E4M3 scales."""
    assert global_scale is not None, "an NVFP4 quantizer is called with its global scale"
    y = rms_norm(x, weight, eps).float()
    blocks = y.unflatten(-1, (-1, NVFP4_BLOCK))
    wide = global_scale * (blocks.abs().amax(dim=-1) * (1.0 / 6.0))
    scales = wide.clamp(max=448.0).to(FP8)
    output_scale = 1.0 / (scales.float() * (1.0 / global_scale))
    output_scale = torch.where(scales.float() == 0, 0.0, output_scale)  # an all-zero block: values 0
    v = (blocks * output_scale.unsqueeze(-1)).clamp(-6.0, 6.0).flatten(-2)
    codes = cast_to_fp4_codes(v)
    return codes[..., 0::2] | (codes[..., 1::2] << 4), scales


def swizzle_128x4(scales: torch.Tensor) -> torch.Tensor:
    """Row-major ``(rows, k)`` scales into the 128x4 tiles NVFP4 GEMMs read (cuBLAS, CUTLASS), flat: rows padded to
    128 and scales to 4 with zeros; a tile's rows ``32 b + c`` and scales ``e`` at ``(c, b, e)`` within it."""
    rows, k = scales.shape
    padded = torch.zeros(-(-rows // 128) * 128, -(-k // 4) * 4, dtype=scales.dtype)
    padded[:rows, :k] = scales
    tiles = padded.view(padded.shape[0] // 128, 4, 32, padded.shape[1] // 4, 4)
    return tiles.permute(0, 3, 2, 1, 4).reshape(-1)


def rms_norm_nvfp4_swizzled(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, global_scale: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rms_norm_nvfp4` with its scales as FlashInfer's ``fp4_quantize`` returns them for a GEMM: the E4M3
    bytes (uint8) in 128x4 swizzled tiles, flat (``--scaling block:swizzled``)."""
    q, scales = rms_norm_nvfp4(x, weight, eps, global_scale)
    return q, swizzle_128x4(scales.reshape(-1, scales.shape[-1]).view(torch.uint8))

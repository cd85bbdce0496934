"""RMSNorm (and one LayerNorm) fused with output quantization: correct implementations and buggy ones.

Element formats: float8_e4m3fn (largest finite 448), float8_e5m2 (57344) and symmetric int8 (-127..127).
Dynamic scalings return ``(q, scales)`` with float32 scales ``max(amax / QMAX, MIN_SCALE)``, one per row
(shape ``x.shape[:-1] + (1,)``) or one per group of G consecutive channels (``x.shape[:-1] + (n // G,)``);
static ones take a float32 0-d ``scale`` and return ``q`` only. Either way ``q = saturate(round(y / scale))``,
rounding to nearest even. ``MIN_SCALE = 1 / (QMAX * 512)`` is vLLM's: an all-zero row gets it and ``q = 0``.
"""

from __future__ import annotations

import torch
from torch import nn

#: The largest finite value of each element format (int8 symmetric: -127..127).
QMAX: dict[torch.dtype, float] = {torch.float8_e4m3fn: 448.0, torch.float8_e5m2: 57344.0, torch.int8: 127.0}


def _min_scale(fmt: torch.dtype) -> float:
    """vLLM's minimum scale for ``fmt``: ``1 / (QMAX * 512)``."""
    return 1.0 / (QMAX[fmt] * 512.0)


def _normalized(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``x * rsqrt(mean(x^2) + eps)`` in the dtype of ``x`` (callers upcast first, or a bug does not)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _rms_norm_fp32(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm entirely in float32, never rounded to the input dtype."""
    return _normalized(x.float(), eps) * weight.float()


def _amax(a: torch.Tensor, group: int | None) -> torch.Tensor:
    """Float32 maxima of ``|a|`` per row (``group=None``: shape ``(..., 1)``) or per group of ``group``
    consecutive channels (shape ``(..., n // group)``)."""
    a = a.float().abs()
    return a.unflatten(-1, (-1, group or a.shape[-1])).amax(-1)


def _scales(amax: torch.Tensor, fmt: torch.dtype) -> torch.Tensor:
    """Float32 scales ``max(amax / QMAX, MIN_SCALE)``."""
    return torch.clamp(amax / QMAX[fmt], min=_min_scale(fmt))


def _per_channel(scales: torch.Tensor, n: int) -> torch.Tensor:
    """Block scales ``(..., k)`` spread over the ``n // k`` channels each covers: shape ``(..., n)``."""
    return scales.repeat_interleave(n // scales.shape[-1], dim=-1)


def _to_format(v: torch.Tensor, fmt: torch.dtype) -> torch.Tensor:
    """Float32 values into ``fmt``, saturating: fp8 clamped then cast (nearest even); int8 rounded half to
    even, clamped, cast. NaN stays NaN in fp8."""
    qmax = QMAX[fmt]
    if fmt == torch.int8:
        v = torch.round(v)
    return v.clamp(-qmax, qmax).to(fmt)


def _quantize_dynamic(
    y: torch.Tensor, fmt: torch.dtype, group: int | None = None, amax_of: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic quantization of float32 ``y``: scales from the block maxima of ``amax_of`` (``y`` itself unless
    a bug says otherwise), values ``y / scale``; returns ``(q, scales)``."""
    scales = _scales(_amax(y if amax_of is None else amax_of, group), fmt)
    return _to_format(y / _per_channel(scales, y.shape[-1]), fmt), scales


def _truncate_to_fp8(v: torch.Tensor, fmt: torch.dtype) -> torch.Tensor:
    """Float32 values into fp8 ``fmt``, saturating but rounded toward zero: where the nearest-even code is
    larger in magnitude than ``v``, the code one step down (fp8 codes are sign-magnitude)."""
    qmax = QMAX[fmt]
    v = v.clamp(-qmax, qmax)
    r = v.to(fmt)
    bits = r.view(torch.uint8)
    return torch.where(r.float().abs() > v.abs(), bits - 1, bits).view(fmt)


def _to_fp8_unsaturated(v: torch.Tensor, fmt: torch.dtype) -> torch.Tensor:
    """Float32 values into fp8 ``fmt`` as a non-saturating conversion does: beyond QMAX becomes NaN."""
    return torch.where(v.abs() > QMAX[fmt], torch.nan, v).to(fmt)


def _to_int8_wrapping(v: torch.Tensor) -> torch.Tensor:
    """Float32 values rounded half to even, then wrapped modulo 256 into int8 (no clamp)."""
    return ((torch.round(v).to(torch.int32) + 128) % 256 - 128).to(torch.int8)


class _QuantNorm(nn.Module):
    """An RMSNorm whose output is quantized to ``fmt``; :meth:`norm` is its float32 output ``y``."""

    fmt: torch.dtype = torch.float8_e4m3fn

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        """The float32 norm output ``y`` to quantize."""
        return _rms_norm_fp32(x, self.weight, self.eps)


class _DynamicQuantNorm(_QuantNorm):
    """Dynamic scaling: one scale per row (``group=None``) or per group of ``group`` channels."""

    group: int | None = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _quantize_dynamic(self.norm(x), self.fmt, self.group)


class _StaticQuantNorm(_QuantNorm):
    """Static scaling: one given float32 0-d scale for the whole tensor; returns ``q`` only."""

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return _to_format(self.norm(x) / scale, self.fmt)


# Correct implementations.


class Fp8PerTokenRMSNorm(_DynamicQuantNorm):
    """Fused: y in float32 throughout, e4m3 per token, scales from the amax of that float32 y."""


class Fp8PerTokenUnfusedRMSNorm(_DynamicQuantNorm):
    """The unfused composition: an all-fp32 RMSNorm cast to the input dtype, then quantized from it (e4m3 per
    token)."""

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        return super().norm(x).to(x.dtype).float()


class Fp8PerTokenReciprocalRMSNorm(_DynamicQuantNorm):
    """Fused fp32 y, values multiplied by the float32 reciprocal ``QMAX / max(amax, MIN_SCALE * QMAX)`` (vLLM's
    reference), the scale returned as ``max(amax / QMAX, MIN_SCALE)``."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.norm(x)
        amax = _amax(y, self.group)
        qmax = QMAX[self.fmt]
        inverse = qmax / torch.clamp(amax, min=_min_scale(self.fmt) * qmax)
        return _to_format(y * _per_channel(inverse, y.shape[-1]), self.fmt), _scales(amax, self.fmt)


def fp8_e5m2_per_token_rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused fp32 RMSNorm quantized to e5m2 per token; returns ``(q, scales)``."""
    return _quantize_dynamic(_rms_norm_fp32(x, weight, eps), torch.float8_e5m2)


def int8_per_token_rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused fp32 RMSNorm quantized to symmetric int8 per token; returns ``(q, scales)``."""
    return _quantize_dynamic(_rms_norm_fp32(x, weight, eps), torch.int8)


class Fp8PerGroup128RMSNorm(_DynamicQuantNorm):
    """Fused fp32 y, e4m3 with one float32 scale per group of 128 channels (DeepSeek-style block FP8)."""

    group = 128


class Fp8PerGroup16RMSNorm(_DynamicQuantNorm):
    """Fused fp32 y, e4m3 with one float32 scale per group of 16 channels (for small hidden sizes)."""

    group = 16


class Fp8StaticRMSNorm(_StaticQuantNorm):
    """Fused fp32 y, e4m3 with a given per-tensor scale: ``forward(x, scale)`` returns ``q``."""


def int8_static_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, scale: torch.Tensor) -> torch.Tensor:
    """Fused fp32 RMSNorm quantized to symmetric int8 with a given per-tensor scale; returns ``q``."""
    return _to_format(_rms_norm_fp32(x, weight, eps) / scale, torch.int8)


class Fp8PerTokenLayerNorm(_DynamicQuantNorm):
    """LayerNorm (biased variance) fused in float32 with e4m3 per-token quantization."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__(hidden_size, eps)
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        centered = xf - xf.mean(-1, keepdim=True)
        return _normalized(centered, self.eps) * self.weight.float() + self.bias.float()


# Buggy implementations: each one named bug, otherwise Fp8PerTokenRMSNorm (or Fp8StaticRMSNorm).


class Fp8AmaxOfInputRMSNorm(_DynamicQuantNorm):
    """Bug: the scales from the amax of the input x instead of y (the values still y / scale)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _quantize_dynamic(self.norm(x), self.fmt, self.group, amax_of=x)


class Fp8AmaxUnweightedRMSNorm(_DynamicQuantNorm):
    """Bug: the scales from the amax of the unweighted normalized x (xhat), the values y / scale."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xhat = _normalized(x.float(), self.eps)
        return _quantize_dynamic(self.norm(x), self.fmt, self.group, amax_of=xhat)


class Fp8TruncatingRMSNorm(_DynamicQuantNorm):
    """Bug: the values rounded toward zero into e4m3 instead of to nearest even."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.norm(x)
        scales = _scales(_amax(y, self.group), self.fmt)
        return _truncate_to_fp8(y / _per_channel(scales, y.shape[-1]), self.fmt), scales


class Fp8StaticUnsaturatedRMSNorm(_StaticQuantNorm):
    """Bug: static e4m3 without saturation: values of ``y / scale`` beyond 448 become NaN."""

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return _to_fp8_unsaturated(self.norm(x) / scale, self.fmt)


def int8_static_wrapping_rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, scale: torch.Tensor
) -> torch.Tensor:
    """Bug: static int8 without the clamp: rounded values beyond 127 wrap around modulo 256."""
    return _to_int8_wrapping(_rms_norm_fp32(x, weight, eps) / scale)


class Fp8NoMinScaleRMSNorm(_DynamicQuantNorm):
    """Bug: no minimum scale: ``scale = amax / QMAX``, so an all-zero row gets scale 0 and NaN values."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.norm(x)
        scales = _amax(y, self.group) / QMAX[self.fmt]
        return _to_format(y / _per_channel(scales, y.shape[-1]), self.fmt), scales


class Fp8ReturnedScaleMismatchRMSNorm(_DynamicQuantNorm):
    """Bug: the values divided by the float32 scales, but the scales returned rounded to bfloat16."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, scales = super().forward(x)
        return q, scales.to(torch.bfloat16).float()


class Fp8StaticScaleMultipliedRMSNorm(_StaticQuantNorm):
    """Bug: static e4m3 with ``q = y * scale`` instead of ``y / scale``."""

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return _to_format(self.norm(x) * scale, self.fmt)


class Fp8StaticScaleIgnoredRMSNorm(_StaticQuantNorm):
    """Bug: static e4m3 with the scale ignored: ``q = saturate(y)``, as if the scale were 1."""

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return _to_format(self.norm(x), self.fmt)


class Fp8MissingUpcastRMSNorm(_DynamicQuantNorm):
    """Bug: y computed entirely in the input dtype, no float32 upcast (MiniMind's norm), then quantized."""

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        return (_normalized(x, self.eps) * self.weight.to(x.dtype)).float()


class Fp8EpsOutsideRMSNorm(_DynamicQuantNorm):
    """Bug: eps added outside the square root: ``x / (sqrt(mean(x^2)) + eps)``, in float32."""

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return xf / (xf.pow(2).mean(-1, keepdim=True).sqrt() + self.eps) * self.weight.float()


class Fp8MisalignedGroupsRMSNorm(_DynamicQuantNorm):
    """Bug: groups of 16 whose maxima are taken over channels shifted by one (the last channel of the previous
    group instead of the group's last one), the values divided by those scales."""

    group = 16

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.norm(x)
        return _quantize_dynamic(y, self.fmt, self.group, amax_of=torch.roll(y.abs(), 1, dims=-1))


# OCP Microscaling: MXFP8 (e4m3) and MXFP4 (e2m1) elements in blocks of 32 with power-of-two (UE8M0) scales.

MX_BLOCK = 32
#: E2M1's magnitudes by code (0..7; bit 3 is the sign), and the midpoints between them with their ties:
#: a value on a midpoint goes to the even code, the upper one where the lower code is odd.
E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
E2M1_MIDPOINTS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)
E2M1_TIES_UP = (0.75, 1.75, 3.5)


def _e2m1_codes(v: torch.Tensor) -> torch.Tensor:
    """Float32 values into E2M1 codes (uint8, 0..15), to nearest even, saturating at 6."""
    a = v.abs().clamp(max=6.0)
    code = torch.bucketize(a, torch.tensor(E2M1_MIDPOINTS, device=v.device))
    code = code + torch.isin(a, torch.tensor(E2M1_TIES_UP, device=v.device))
    return (code + 8 * (v < 0)).to(torch.uint8)


def _pack_fp4(codes: torch.Tensor, as_uint8: bool) -> torch.Tensor:
    """Two E2M1 codes per byte, the first element in the low nibble (torch's float4_e2m1fn_x2 order)."""
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return packed if as_uint8 else packed.view(torch.float4_e2m1fn_x2)


def _ue8m0(amax: torch.Tensor, largest: float, rule: str) -> torch.Tensor:
    """Float32 power-of-two scales of float32 block maxima: ``"ocp"`` 2^(floor(log2 amax) - emax), ``"ceil"``
    2^ceil(log2(amax / largest)) (computed in float32, as a kernel would), ``"floor"`` rounded down (the bug);
    an all-zero block gets 1 (its values are 0 whatever the scale)."""
    emax = {448.0: 8, 6.0: 2}[largest]
    if rule == "ocp":
        e = torch.frexp(amax)[1] - 1 - emax
    else:
        mantissa, e = torch.frexp(amax / largest)
        e = e - 1 if rule == "floor" else torch.where(mantissa == 0.5, e - 1, e)
    return torch.where(amax > 0, torch.ldexp(torch.ones_like(amax), e.float()), torch.ones_like(amax))


class _MxRMSNorm(_QuantNorm):
    """Fused fp32 y quantized in blocks of 32 with UE8M0 scales by ``rule``, returned as float32 (or as
    ``torch.float8_e8m0fnu`` with ``e8m0``); FP4 values packed two to a byte."""

    rule = "ocp"
    fp4 = False
    as_uint8 = False
    e8m0 = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.norm(x)
        largest = 6.0 if self.fp4 else 448.0
        scales = _ue8m0(_amax(y, MX_BLOCK), largest, self.rule)
        v = y / _per_channel(scales, y.shape[-1])  # exact: a power of two
        q = _pack_fp4(_e2m1_codes(v), self.as_uint8) if self.fp4 else _to_format(v, torch.float8_e4m3fn)
        return q, scales.to(torch.float8_e8m0fnu) if self.e8m0 else scales


class MxFp8RMSNorm(_MxRMSNorm):
    """MXFP8 by the OCP rule: the block's largest element may saturate at 448."""


class MxFp8CeilRMSNorm(_MxRMSNorm):
    """MXFP8 with the scale rounded up (no element saturates), returned as float8_e8m0fnu."""

    rule = "ceil"
    e8m0 = True


class MxFp4RMSNorm(_MxRMSNorm):
    """MXFP4 by the OCP rule, packed as torch.float4_e2m1fn_x2."""

    fp4 = True


class MxFp4CeilUint8RMSNorm(_MxRMSNorm):
    """MXFP4 with the scale rounded up, packed in uint8."""

    fp4 = True
    as_uint8 = True
    rule = "ceil"


class MxFp8FloorRMSNorm(_MxRMSNorm):
    """Bug: the UE8M0 scale rounded down: the block's largest values overflow (saturate at 448) by up to 2x."""

    rule = "floor"


# NVFP4: E2M1 elements in blocks of 16, each with an E4M3 scale, and a given float32 global scale g (vLLM's and
# FlashInfer's convention: g = 448 * 6 / amax of the tensor, chosen offline): s = e4m3(g * amax / 6),
# q = e2m1(y * g / s), dequantized as q * s / g.

NV_BLOCK = 16


class _NvFp4RMSNorm(_QuantNorm):
    """Fused fp32 y quantized to NVFP4 as vLLM's reference does: ``s = e4m3(g * (amax * (1 / 6)))`` clamped to
    448, the values ``y * (1 / (s * (1 / g)))`` (0 where ``s`` is 0); returns (packed q, scales)."""

    as_uint8 = False
    divide = False  #: y / (s / g) instead of the reciprocal multiply
    e4m3_scales = True  #: the scales returned as float8_e4m3fn (else their float32 values)
    unrounded = False  #: bug: the values made with the float32 scale
    use_global = "multiply"  #: how the global scale is used: a bug "ignore"-s it, or "divide"-s by it

    def forward(self, x: torch.Tensor, global_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.norm(x)
        g = {"multiply": global_scale, "ignore": torch.ones_like(global_scale), "divide": 1.0 / global_scale}[
            self.use_global
        ]
        wide = g * (_amax(y, NV_BLOCK) * (1.0 / 6.0))
        scales = wide.clamp(max=448.0).to(torch.float8_e4m3fn)
        used = wide if self.unrounded else scales.float()
        if self.divide:
            divisor = _per_channel(used / g, y.shape[-1])
            v = torch.where(divisor != 0, y / divisor, 0.0)
        else:
            inverse = torch.where(used != 0, 1.0 / (used * (1.0 / g)), 0.0)
            v = y * _per_channel(inverse, y.shape[-1])
        q = _pack_fp4(_e2m1_codes(v), self.as_uint8)
        return q, scales if self.e4m3_scales else scales.float()


class NvFp4RMSNorm(_NvFp4RMSNorm):
    """NVFP4 as vLLM's reference: reciprocal scales, float4_e2m1fn_x2 values, float8_e4m3fn scales."""


class NvFp4DivideUint8RMSNorm(_NvFp4RMSNorm):
    """NVFP4 dividing by s / g, values packed in uint8, scales returned as float32."""

    divide = True
    as_uint8 = True
    e4m3_scales = False


class NvFp4UnroundedScaleRMSNorm(_NvFp4RMSNorm):
    """Bug: the values made with the float32 block scale, the E4M3 one returned."""

    unrounded = True


class NvFp4GlobalIgnoredRMSNorm(_NvFp4RMSNorm):
    """Bug: the global scale ignored (taken as 1): block scales and values as if no global scale were given."""

    use_global = "ignore"


class NvFp4GlobalInvertedRMSNorm(_NvFp4RMSNorm):
    """Bug: the global scale taken as a divisor (the other convention, ``amax / 448 / 6``) where it multiplies."""

    use_global = "divide"


# Fused residual-add + RMSNorm + quantization (vLLM's fused_add_rms_norm_*_quant): the norm of x + residual,
# quantized; x + residual handed back (returned, or written into residual in place).


class Fp8FusedAddRMSNorm(_QuantNorm):
    """The sum in float32, rounded to the input dtype as residual_out; y of the float32 sum; dynamic per-token
    FP8: returns ``(q, scales, residual_out)``."""

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        total = x.float() + residual.float()
        q, scales = _quantize_dynamic(_rms_norm_fp32(total, self.weight, self.eps), self.fmt)
        return q, scales, total.to(x.dtype)


class Fp8StaticFusedAddInPlaceRMSNorm(_QuantNorm):
    """vLLM's fused_add_rms_norm_static_fp8_quant: ``residual += x`` in place (the sum rounded to the input
    dtype), then the float32 norm of that rounded sum over a given static scale; returns ``q``."""

    def forward(self, x: torch.Tensor, residual: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        residual.add_(x)
        return _to_format(_rms_norm_fp32(residual, self.weight, self.eps) / scale, self.fmt)


class Fp8FusedAddMissingUpcastRMSNorm(Fp8FusedAddRMSNorm):
    """Bug: the sum and its norm in the input dtype (no fp32 upcast), then quantized."""

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        total = x + residual
        q, scales = _quantize_dynamic(_normalized(total, self.eps) * self.weight.to(x.dtype), self.fmt)
        return q, scales, total


class Fp8StaticFusedAddUnsaturatedRMSNorm(_QuantNorm):
    """Bug: as :class:`Fp8StaticFusedAddInPlaceRMSNorm`, but quotients past 448 become NaN (no saturation)."""

    def forward(self, x: torch.Tensor, residual: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        residual.add_(x)
        return _to_fp8_unsaturated(_rms_norm_fp32(residual, self.weight, self.eps) / scale, self.fmt)


# Hidden sizes that are not a multiple of the group: the last group shorter.


def _amax_any_size(y: torch.Tensor, group: int, overread: bool = False) -> torch.Tensor:
    """Float32 maxima of ``|y|`` per group of ``group`` consecutive channels, the last group of a row shorter
    where ``n`` is not a multiple (shape ``(..., ceil(n / group))``); ``overread``: a bug's last group reads
    on past its row's end, into the next row (zeros after the last), as a kernel that loads whole groups."""
    n = y.shape[-1]
    rows = y.reshape(-1, n).float().abs()
    within = torch.arange(0, n, group)[:, None] + torch.arange(group)[None, :]  # (groups, group) channel indices
    flat = torch.cat([rows.reshape(-1), rows.new_zeros(group)])
    values = flat[torch.arange(rows.shape[0])[:, None, None] * n + within]
    if not overread:
        values = torch.where(within < n, values, 0.0)
    return values.amax(-1).reshape(*y.shape[:-1], -1)


class Fp8AnySizeGroup16RMSNorm(_QuantNorm):
    """Per-group-of-16 FP8 at any hidden size: the last group of a row holds what is left of it."""

    overread = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.norm(x)
        scales = _scales(_amax_any_size(y, 16, self.overread), self.fmt)
        per_channel = scales.repeat_interleave(16, dim=-1)[..., : y.shape[-1]]
        return _to_format(y / per_channel, self.fmt), scales


class Fp8OverreadGroup16RMSNorm(Fp8AnySizeGroup16RMSNorm):
    """Bug: the last, shorter group's maximum also reads the next row's first channels."""

    overread = True


def nvfp4_scales_not_swizzled(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, global_scale: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bug: NVFP4 scales padded to the 128x4 tiles' size but left row by row (the swizzle skipped)."""
    from examples.quantized_norms import rms_norm_nvfp4

    q, scales = rms_norm_nvfp4(x, weight, eps, global_scale)
    rows, k = scales.reshape(-1, scales.shape[-1]).shape
    padded = torch.zeros(-(-rows // 128) * 128, -(-k // 4) * 4, dtype=torch.uint8)
    padded[:rows, :k] = scales.reshape(rows, k).view(torch.uint8)
    return q, padded.reshape(-1)

"""RMSNorm fused with output quantization in numpy (float8 through ``ml_dtypes``) and in JAX, written as the
torch references of examples/quantized_norms.py are: the norm in float32, rounded to the input dtype, times the
weight, then the quantizer."""

from __future__ import annotations

import ml_dtypes
import numpy as np

FP8 = ml_dtypes.float8_e4m3fn
FP8_MAX = float(ml_dtypes.finfo(FP8).max)  # 448


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """Variance and normalization in float32, cast to the input dtype, times the weight."""
    xf = x.astype(np.float32)
    r = np.float32(1) / np.sqrt(np.mean(xf * xf, axis=-1, keepdims=True) + np.float32(eps))
    return (xf * r).astype(x.dtype) * weight


def per_token_scales(y: np.ndarray, top: float) -> np.ndarray:
    """``max(amax / top, 1 / (top * 512))`` per row in float32 (vLLM's minimum scale), shape (..., 1)."""
    amax = np.max(np.abs(y.astype(np.float32)), axis=-1, keepdims=True)
    return np.maximum(amax / np.float32(top), np.float32(1 / (top * 512)))


def rms_norm_per_token_fp8(x: np.ndarray, weight: np.ndarray, eps: float = 1e-6):
    """Dynamic per-token FP8 (float8_e4m3fn): values ``y * (1 / scale)`` saturated; returns ``(q, scales)``."""
    y = rms_norm(x, weight, eps).astype(np.float32)
    scales = per_token_scales(y, FP8_MAX)
    return np.clip(y * (np.float32(1) / scales), -FP8_MAX, FP8_MAX).astype(FP8), scales


def rms_norm_per_token_fp8_amax_of_x(x: np.ndarray, weight: np.ndarray, eps: float = 1e-6):
    """Bug: the scale from the input's largest magnitude, not the normalized output's."""
    y = rms_norm(x, weight, eps).astype(np.float32)
    scales = per_token_scales(x, FP8_MAX)
    return np.clip(y / scales, -FP8_MAX, FP8_MAX).astype(FP8), scales


def rms_norm_static_int8(x: np.ndarray, weight: np.ndarray, eps: float = 1e-6, scale: np.ndarray | None = None):
    """Static per-tensor int8: ``y / scale`` rounded half to even, saturated at +-127."""
    assert scale is not None, "a static quantizer is called with its scale"
    v = rms_norm(x, weight, eps).astype(np.float32) / scale
    return np.clip(np.rint(v), -127, 127).astype(np.int8)


def rms_norm_per_token_fp8_plain(x: np.ndarray, weight: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Bug (of interface): a dynamic quantizer that returns its values without their scales."""
    return rms_norm_per_token_fp8(x, weight, eps)[0]


def jax_rms_norm_per_token_fp8(x, weight, eps: float = 1e-6):
    """The same dynamic per-token FP8 in JAX (``jnp.float8_e4m3fn``)."""
    import jax.numpy as jnp

    xf = x.astype(jnp.float32)
    y = ((xf * (1 / jnp.sqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps))).astype(x.dtype) * weight).astype(
        jnp.float32
    )
    scales = jnp.maximum(jnp.max(jnp.abs(y), axis=-1, keepdims=True) / FP8_MAX, 1 / (FP8_MAX * 512))
    return jnp.clip(y * (1 / scales), -FP8_MAX, FP8_MAX).astype(jnp.float8_e4m3fn), scales

"""JAX functions audited through jax.vjp: a correct RMSNorm and one without the fp32 upcast."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rms_norm(x: jax.Array, weight: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Correct: fp32 inside, one rounding into the input dtype."""
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
    return (y * weight.astype(xf.dtype)).astype(x.dtype)


def rms_norm_no_upcast(x: jax.Array, weight: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Bug: everything in the input dtype."""
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + jnp.asarray(eps, x.dtype)) * weight

"""Flax LayerNorm with the two-pass variance: ``nnx.LayerNorm(..., use_fast_variance=False)``.

Flax's default (``use_fast_variance=True``) computes E[x^2] - E[x]^2, which cancels on rows with a
large mean; this class states the two-pass convention instead, for normcheck to audit::

    python -m normcheck audit examples/flax_norms.py:TwoPassLayerNorm
"""

from __future__ import annotations

from flax import nnx


class TwoPassLayerNorm(nnx.LayerNorm):
    """``nnx.LayerNorm`` with ``use_fast_variance=False``; every other argument passes through."""

    def __init__(self, num_features: int, **kwargs: object) -> None:
        super().__init__(num_features, use_fast_variance=False, **kwargs)  # type: ignore[arg-type]

"""Exact oracles for RMSNorm and LayerNorm, forward and backward (numpy, mpmath, ml_dtypes, numba; never torch).

Every function returns :class:`Exact` results: the exact real values, correctly
rounded into any binary format on request, and the ULP error of any candidate.
"""

from oracles.exact import ULP_ERROR_ACCURACY, Exact
from oracles.formats import BFLOAT16, FLOAT16, FLOAT32, FLOAT64, FORMATS, FloatFormat, resolve_format
from oracles.layernorm import layer_norm, layer_norm_backward
from oracles.outputs import norm_outputs
from oracles.residual import residual_sum
from oracles.rmsnorm import rms_norm, rms_norm_backward
from oracles.rootsum import RootSum
from oracles.rounding import round_floats, round_rational

__all__ = [
    "BFLOAT16",
    "FLOAT16",
    "FLOAT32",
    "FLOAT64",
    "FORMATS",
    "ULP_ERROR_ACCURACY",
    "Exact",
    "FloatFormat",
    "RootSum",
    "layer_norm",
    "layer_norm_backward",
    "norm_outputs",
    "residual_sum",
    "resolve_format",
    "rms_norm",
    "rms_norm_backward",
    "round_floats",
    "round_rational",
]

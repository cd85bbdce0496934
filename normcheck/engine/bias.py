"""The statistical checks of many outputs: a biased rounding overall (truncation), and channels that
drift one way (a weight offset rounded in low precision)."""

from __future__ import annotations

import numpy as np

import oracles
from normcheck.quantization import Scheme
from normcheck.result import Finding
from normcheck.strategies import NormInput
from normcheck.target.protocol import Run
from normcheck.verdict.bounds import ulp
from oracles import FloatFormat

#: Bias test: the mean error (in ulps, toward larger magnitude) a correct rounding cannot show.
BIAS_ULPS, BIAS_Z = 0.1, 8.0


def bias_findings(y: np.ndarray, ex: oracles.Exact, fmt: FloatFormat, case: NormInput, dtype: str) -> list[Finding]:
    """Findings of a biased ``y`` on ``case`` (many rows), against the exact ``ex``. Tested in half formats
    only: in fp32/fp64 outputs the compute error, not the final rounding, dominates."""
    n = case.n
    with np.errstate(all="ignore"):
        err = ex.signed_ulp_error(y.astype(fmt.dtype), fmt) * np.sign(ex.approx)
    err = err[np.isfinite(err)].reshape(-1, n) if np.isfinite(err).all() else err
    findings = overall_bias(err, "y", case, dtype)
    if np.ndim(err) == 2 and err.shape[0] >= 64:
        # A channel drifts when it departs from the other channels (an overall bias is reported above).
        col_mean = err.mean(axis=0) - err.mean()
        col_z = col_mean / (err.std(axis=0) + 1e-12) * np.sqrt(err.shape[0])
        bad = (np.abs(col_mean) > 2 * BIAS_ULPS) & (np.abs(col_z) > BIAS_Z)
        if bad.any():
            j = int(np.argmax(np.abs(col_mean) * bad))
            findings.append(
                Finding(
                    "bias",
                    dtype,
                    "y",
                    f"{int(bad.sum())} of {n} channels drift one way (channel {j}: {col_mean[j]:+.3f} ulp from the "
                    f"mean over {err.shape[0]} rows); a per-channel error such as a rounded weight offset",
                    case.regime,
                    example=case,
                    severity=abs(float(col_mean[j])),
                )
            )
    return findings


def overall_bias(err: np.ndarray, output: str, case: NormInput, dtype: str) -> list[Finding]:
    """A finding where the signed errors ``err`` (in ulps, toward larger magnitude; NaN: not counted) of
    ``output`` lean one way more than correct rounding can: by :data:`BIAS_ULPS` on average, at :data:`BIAS_Z`."""
    flat = np.ravel(err)
    flat = flat[np.isfinite(flat)]
    if flat.size < 1000:
        return []
    mean, sd = float(flat.mean()), float(flat.std()) or 1.0
    z = mean / (sd / np.sqrt(flat.size))
    if abs(mean) <= BIAS_ULPS or abs(z) <= BIAS_Z:
        return []
    message = (
        f"{output} is biased {'toward zero' if mean < 0 else 'away from zero'} by {mean:+.3f} ulp on average "
        f"over {flat.size} outputs (z = {z:.1f}); correct rounding is unbiased"
    )
    return [Finding("bias", dtype, output, message, case.regime, example=case, severity=abs(mean))]


def quantized_bias(run: Run, y: oracles.Exact, case: NormInput, dtype: str, scheme: Scheme) -> list[Finding]:
    """A finding where a quantized norm's values lean one way from the exact ``y`` over the scales they were made
    with (``y / s``, in steps of the element format), counted where a step is at most an eighth of the value
    (e4m3's normal values, int8's from 8 up; e5m2 and FP4 steps are too coarse for values to fill them evenly)
    and the value is inside the format's range."""
    divisors = scheme.element_divisors(run.scales, run.given_scale, y.shape)
    if run.y is None or divisors is None or run.y.shape != y.shape:
        return []
    with np.errstate(all="ignore"):
        v = y.approx / divisors
        step = ulp(v, scheme.element)
        q = run.y.astype(np.float64)
        counted = np.isfinite(q) & (np.abs(v) <= scheme.largest) & (step * 8 <= np.abs(v))
        err = np.where(counted, (q - v) / step * np.sign(v), np.nan)
    return overall_bias(err, "q", case, dtype)

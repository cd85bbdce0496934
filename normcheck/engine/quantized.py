"""The judge of a quantized norm: its scales and values against the exact ``y``, allowing exactly what a correct
kernel can differ by. Pure, as :mod:`normcheck.engine.judge`.

A correct kernel computes ``y`` in float32 (fused) or rounds it to the input dtype first (the unfused
composition), takes the largest magnitude of those values per block, and divides by the float32 scale
``amax / largest`` or multiplies by its reciprocal. Its ``y`` is within a tier's bound of the exact one (the
same bounds as an unquantized norm's, :mod:`normcheck.verdict.bounds`), and its scale and quotient carry at
most three float32 roundings besides. So, per tier:

- a **scale** must lie within ``(amax +- the largest bound of y in the block) / largest``, widened by
  ``2**-22`` relative; a scale raised to the floor ``FLOOR / largest`` (vLLM's minimum scale) is accepted
  where the exact one is below it;
- a **value** must be one of the roundings (saturating) of the points within ``bound / s + 2**-22 |y / s|`` of
  the exact ``y / s``, ``s`` the scale the kernel returned (or was given): the correct rounding wherever no
  rounding boundary is that close, either neighbour where one is. A kernel that computes its values with
  one scale and returns another misses wherever the two quotients round apart.

NVFP4 (E2M1 values, E4M3 block scales ``s = e4m3(g * amax / 6)`` for a given float32 global scale ``g``): a block
scale must be an E4M3 value between the roundings of ``g * (amax +- the largest bound) / 6``, widened by
``2**-22``; a value one of the roundings of ``y * g / s`` within ``bound * g / s + 2**-21 |y * g / s|`` (one
more rounding: the reciprocal of ``s / g``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

import oracles
from normcheck.engine.judge import Judgement
from normcheck.engine.scale_rules import ARITHMETIC, scale_rule
from normcheck.quantization import Scheme
from normcheck.result import Finding
from normcheck.stats import Errors
from normcheck.strategies import NormInput
from normcheck.target.protocol import Run
from normcheck.verdict.bounds import Bound, ulp
from normcheck.verdict.tiers import Tier, crossing, effective
from oracles.quantize import (
    BlockMax,
    per_element,
    quantize,
    rounding_range,
)

#: NVFP4's values: four float32 roundings (the global scale's reciprocal, its product with the block scale,
#: the reciprocal of that, the product with y), with room to spare.
ARITHMETIC_GLOBAL = 2.0**-21


def judge_quantized(run: Run, y: oracles.Exact, limit: Bound, case: NormInput, dtype: str, scheme: Scheme) -> Judgement:
    """A quantized norm's answer (``run.y`` the values, ``run.scales`` or ``run.given_scale`` the scales)
    against the exact ``y`` and the tiers of its bound."""
    out = Judgement()
    if run.y is None or run.y.shape != y.shape:
        return out  # (the wrong shape is a finding of run_problems already)
    allowed = effective(limit.tiers)
    multiplier = float(run.given_scale) if scheme.global_scale and run.given_scale is not None else 1.0
    if scheme.static:
        assert run.given_scale is not None, "a candidate records the static scale it called the kernel with"
        scales = np.array(run.given_scale, dtype=np.float64)
    else:
        if run.scales is None or run.scales.shape != scheme.scales_shape(y.shape):
            return out
        scales = run.scales.astype(np.float64)
        _judge_scales(out, scales, y, limit.tiers, allowed, case, dtype, scheme, multiplier)
    _judge_values(out, run.y, scales, y, limit.tiers, allowed, case, dtype, scheme, multiplier)
    return out


def _judge_scales(
    out: Judgement,
    scales: np.ndarray,
    y: oracles.Exact,
    tiers: tuple[Tier, ...],
    allowed: list[np.ndarray],
    case: NormInput,
    dtype: str,
    scheme: Scheme,
    multiplier: float,
) -> None:
    amax = BlockMax(y, scheme.block_size(case.n))
    rule = scale_rule(scheme, multiplier)
    ranges = []
    with np.errstate(all="ignore"):
        for a in allowed:
            reach = amax.reduce(np.broadcast_to(a, y.shape))
            ranges.append(rule.range(np.maximum(amax.lo - reach, 0.0), amax.hi + reach))
        exact = rule.exact(amax, scales)
    defined = ~np.isnan(amax.lo)
    bad = defined & ~(np.isfinite(scales) & (scales >= 0))
    if bad.any():
        i = _index(bad)
        message = f"scale is {scales[i]} where the exact scale is {exact[i]:.6g}; {int(bad.sum())} such blocks"
        out.findings.append(_finding("nonfinite", "scales", message, case, dtype, i, scales[i], exact[i], bad))
    judged = defined & ~bad
    odd = judged & rule.odd(scales)
    if odd.any():
        i = _index(odd)
        message = f"scale is {scales[i]:.6g}, not {rule.values()}; {int(odd.sum())} such blocks"
        out.findings.append(_finding("accuracy", "scales", message, case, dtype, i, scales[i], exact[i], odd))
    judged &= ~odd & rule.judged(amax)
    unit = rule.unit(exact)
    _judge(out, "scales", scales, exact, unit, ranges, judged, tiers, rule.reason(), case, dtype, rule.fmt)


def _judge_values(
    out: Judgement,
    q: np.ndarray,
    scales: np.ndarray,
    y: oracles.Exact,
    tiers: tuple[Tier, ...],
    allowed: list[np.ndarray],
    case: NormInput,
    dtype: str,
    scheme: Scheme,
    multiplier: float,
) -> None:
    fmt = scheme.element
    s = per_element(scales, y.shape, scheme.block_size(case.n))
    got = q.astype(np.float64)
    usable = ~y.undefined & np.isfinite(s) & (s > 0)
    arithmetic = ARITHMETIC_GLOBAL if scheme.global_scale else ARITHMETIC
    with np.errstate(all="ignore"):
        v = y.approx * multiplier / s
        target = np.clip(v, -scheme.largest, scheme.largest)  # saturation is the convention
        radius = [(a + y.error_bound) * multiplier / s + np.abs(v) * arithmetic for a in allowed]
        ranges = [rounding_range(v, r, fmt) for r in radius]
    # A zero scale (an all-zero block without a minimum scale) must still give finite values: 0.
    bad = (usable | (~y.undefined & (s == 0))) & ~np.isfinite(got)
    if bad.any():
        i = _index(bad)
        message = f"q is {got[i]} where y/scale is {v[i]:.6g} (scale {s[i]:.6g}); {int(bad.sum())} such values"
        out.findings.append(_finding("nonfinite", "q", message, case, dtype, i, got[i], v[i], bad))
    unit = ulp(target, fmt)
    if scheme.global_scale:
        reason = f"the roundings into {fmt.name} of y*g/s within ({{}} bound of y)*g/s + 2^-21 |y*g/s|, saturating"
    else:
        reason = f"the roundings into {fmt.name} of y/s within ({{}} bound of y)/s + 2^-22 |y/s|, saturating"
    rounded = partial(quantize, y, scales, fmt, multiplier)  # (only a finding shows it)
    _judge(out, "q", got, target, unit, ranges, usable & ~bad, tiers, reason, case, dtype, fmt, rounded)


def _judge(
    out: Judgement,
    name: str,
    got: np.ndarray,
    exact: np.ndarray,
    unit: np.ndarray,
    ranges: list[tuple[np.ndarray, np.ndarray]],
    judged: np.ndarray,
    tiers: tuple[Tier, ...],
    reason: str,
    case: NormInput,
    dtype: str,
    fmt: oracles.FloatFormat,
    rounded: Callable[[], np.ndarray] | None = None,
) -> None:
    """``got`` against each tier's range of correct answers: the errors for the statistics (in ulps of
    ``fmt`` at ``exact``) and a finding naming the loosest tier crossed."""
    out.reasons[name] = {t.name: reason.format(t.name) for t in tiers}
    if not judged.any():
        return
    with np.errstate(all="ignore"):
        signed = (got - exact) / unit
        reach = [np.maximum(exact - lo, hi - exact) / unit for lo, hi in ranges]
        binade = np.floor(np.log2(np.abs(exact[judged])))
    out.errors.append(
        Errors(
            name,
            signed[judged],
            {t.name: r[judged] for t, r in zip(tiers, reach)},
            signed[judged],
            np.nan_to_num(binade, neginf=fmt.emin - fmt.precision, posinf=0),
            np.full(int(judged.sum()), case.n),
        )
    )
    over = [judged & ((got < lo) | (got > hi)) for lo, hi in ranges]
    if not over[-1].any():
        return
    k = next(i for i, crossed in enumerate(over) if crossed.any())
    crossed = over[k]
    i = _index(crossed, np.abs(signed))
    e, at_i = float(abs(signed[i])), [float(r[i]) for r in reach]
    correct = "" if rounded is None else f" (y/scale = {exact[i]:.6g} rounds to {rounded()[i]:.6g})"
    shape = "x".join(map(str, case.x.shape))
    how = crossing(e, at_i, tiers, k)
    message = (
        f"{name} is {e:.3g} ulp of {fmt.name} from the exact value at {list(i)}: {got[i]:.6g}{correct}: {how}; "
        f"{int(crossed.sum())} of {int(judged.sum())} {'values' if name == 'q' else name} outside the {tiers[k].name} "
        f"range (input {shape})"
    )
    finding = _finding("accuracy", name, message, case, dtype, i, got[i], exact[i], crossed, severity=e)
    assert finding.worst is not None
    finding.worst.update(
        shape=list(case.x.shape),
        regime=case.regime,
        tier=tiers[k].name,
        candidate_hex=float(got[i]).hex(),
        ulp_error=e,
        value_ulp_error=e,
        **{f"{t.name}_ulp": a for t, a in zip(tiers, at_i)},
    )
    out.findings.append(finding)


def _index(mask: np.ndarray, weight: np.ndarray | None = None) -> tuple[int, ...]:
    """The first element of ``mask`` (or the one of largest ``weight`` in it), as a tuple index."""
    flat = int(np.argmax(mask if weight is None else np.where(mask, np.nan_to_num(weight, posinf=1e300), -1)))
    return tuple(int(v) for v in np.unravel_index(flat, mask.shape))


def _finding(
    check: str,
    name: str,
    message: str,
    case: NormInput,
    dtype: str,
    i: tuple[int, ...],
    candidate: float,
    exact: float,
    mask: np.ndarray,
    severity: float | None = None,
) -> Finding:
    return Finding(
        check,
        dtype,
        name,
        message,
        case.regime,
        worst={"index": list(i), "candidate": float(candidate), "exact": float(exact)},
        example=case,
        severity=float(mask.sum()) if severity is None else severity,
    )

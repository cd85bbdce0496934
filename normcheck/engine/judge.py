"""The judge: from an implementation's outputs, the exact values and their bounds to findings and the
errors the statistics keep. Pure: nothing here calls the implementation or writes into a result."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import oracles
from normcheck.engine.calls import size_block
from normcheck.report.reproducer import bits
from normcheck.result import OUTPUTS, Finding
from normcheck.stats import Errors
from normcheck.strategies import NormInput
from normcheck.target.protocol import Run
from normcheck.verdict.bounds import Bound, ulp
from normcheck.verdict.tiers import crossing, effective


@dataclass
class Judgement:
    """What the judge says of one answer against one normalized input."""

    findings: list[Finding] = field(default_factory=list)
    errors: list[Errors] = field(default_factory=list)
    #: per output: each tier's formula, {"rigorous": ..., "sharp": ...}
    reasons: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def accurate(self) -> bool:
        return not any(f.check == "accuracy" for f in self.findings)


def judge_outputs(
    got: dict[str, np.ndarray | None],
    exact: dict[str, oracles.Exact],
    limits: dict[str, Bound],
    case: NormInput,
    dtype: str,
) -> Judgement:
    """Every output in ``got`` against its exact value and bound."""
    out = Judgement()
    for name, ex in exact.items():
        cand = got.get(name)
        if cand is None:
            continue
        if np.shape(cand) != ex.shape:
            message = f"{name} has shape {np.shape(cand)}, expected {ex.shape}"
            out.findings.append(Finding("shape", dtype, name, message, case.regime, example=case))
            continue
        limit = limits[name]
        out.reasons[name] = {t.name: t.reason for t in limit.tiers}
        findings, errors = judge_output(name, cand, ex, limit, case, dtype)
        out.findings += findings
        if errors is not None:
            out.errors.append(errors)
    return out


def _nonfinite(name: str, c: np.ndarray, ex: oracles.Exact, limit: Bound, case: NormInput, dtype: str) -> list[Finding]:
    """A finding where an element is infinite or NaN and no correct computation could make it so.

    Where the exact value overflows the format, or a correct computation may (the exact value plus the
    rigorous bound reaches the rounding threshold of overflow, or the terms of a convention that rounds
    them into the format do: T5's two paths of dx), an infinity of its sign is right, and so is a NaN
    (an intermediate inf - inf).
    """
    fmt = limit.fmt
    nonfinite = ~ex.undefined & ~np.isfinite(c)
    if not nonfinite.any():
        return []
    rounded = ex.round(fmt).astype(np.float64)
    overflow = float(fmt.max_finite) + 2.0 ** (fmt.emax - fmt.precision)
    with np.errstate(invalid="ignore"):
        overflows = np.isinf(rounded) | (np.abs(ex.approx) + limit.allowed("rigorous") >= overflow)
        overflows |= (limit.intermediate > 0) & (limit.scale >= overflow)
        bad_special = nonfinite & ~(overflows & (np.isnan(c) | (np.sign(c) == np.sign(ex.approx))))
    if not bad_special.any():
        return []
    i = tuple(int(v) for v in np.argwhere(bad_special)[0])
    return [
        Finding(
            "nonfinite",
            dtype,
            name,
            f"{name} is {c[i]} where the exact value is finite "
            f"({ex.approx[i]:.6g}, rounds to {rounded[i]:.6g}); {int(bad_special.sum())} such elements",
            case.regime,
            worst={"index": list(i), "candidate": float(c[i]), "exact": float(ex.approx[i])},
            example=case,
            severity=float(bad_special.sum()),
        )
    ]


def judge_output(
    name: str, cand: np.ndarray, ex: oracles.Exact, limit: Bound, case: NormInput, dtype: str
) -> tuple[list[Finding], Errors | None]:
    """One output: the non-finite elements no correct code makes, the finite ones past the sharp bound
    (which tier they cross), and the errors of the finite ones (None where no element is judged)."""
    fmt = limit.fmt  # the output's format: the parameters' for dw and db
    c = np.asarray(cand, dtype=np.float64)
    findings = _nonfinite(name, c, ex, limit, case, dtype)
    judged = ~ex.undefined & np.isfinite(c)
    if not judged.any():
        return findings, None
    allowed = effective(limit.tiers)
    everywhere = bool(judged.all())

    def kept(a: np.ndarray) -> np.ndarray:
        """The judged elements of ``a``, flat (all of them, without a copy, where every element is judged)."""
        return a.reshape(-1) if everywhere else a[judged]

    with np.errstate(all="ignore"):
        unit = ulp(limit.scale, fmt)
        err = np.where(judged, c - ex.approx, 0.0)
        signed = err / unit
        in_ulps = [a / unit for a in allowed]
        # The plain ULP error, where the element does not cancel against its own terms.
        whole = judged & (np.abs(ex.approx) >= limit.scale / 16)
        plain = np.where(whole, err / ulp(ex.approx, fmt), np.nan)
        binade = np.floor(np.log2(np.abs(kept(ex.approx))))
    count = binade.size
    errors = Errors(
        name,
        kept(signed),
        {t.name: kept(u) for t, u in zip(limit.tiers, in_ulps)},
        kept(plain),
        np.nan_to_num(binade, neginf=fmt.emin - fmt.precision),
        np.full(count, case.n, dtype=np.int32),
    )
    tightest = ex.exceeds(c, allowed[-1]) & judged
    if not tightest.any():  # the tightest tier holds: so do the others (the common case: one exact test)
        return findings, errors
    over = [ex.exceeds(c, a) & judged for a in allowed[:-1]] + [tightest]
    k = next(i for i, crossed in enumerate(over) if crossed.any())  # the loosest tier crossed
    tier, crossed = limit.tiers[k].name, over[k]
    i = tuple(int(v) for v in np.unravel_index(int(np.argmax(np.where(crossed, np.abs(signed), -1))), c.shape))
    e, at_i = abs(signed[i]), [float(u[i]) for u in in_ulps]
    how = crossing(float(e), at_i, limit.tiers, k)
    value_ulp = ""
    if name != "y" and not np.isnan(plain[i]) and not 0.5 < abs(plain[i]) / max(e, 1e-300) < 2:
        value_ulp = f" (of its terms' scale; {abs(plain[i]):.3g} ulp of itself)"
    shape = "x".join(map(str, case.x.shape))
    findings.append(
        Finding(
            "accuracy",
            dtype,
            name,
            f"{name} is {e:.3g} ulp{value_ulp} from the exact value at {list(i)}: {how}; "
            f"{int(crossed.sum())} of {int(judged.sum())} elements exceed the {tier} bound (input {shape})",
            case.regime,
            worst={
                "index": list(i),
                "shape": list(case.x.shape),
                "regime": case.regime,
                "tier": tier,
                "candidate": float(c[i]),
                "candidate_hex": float(c[i]).hex(),
                "exact": float(ex.approx[i]),
                "ulp_error": float(e),
                "value_ulp_error": None if np.isnan(plain[i]) else float(abs(plain[i])),
                **{f"{t.name}_ulp": a for t, a in zip(limit.tiers, at_i)},
            },
            example=case,
            severity=float(e),
        )
    )
    return findings, errors


def run_problems(run: Run, case: NormInput, dtype: str) -> list[Finding]:
    """What is wrong with a call besides its values: it raised, crashed or hung, answered in the wrong
    shape or dtype, or wrote into its inputs."""
    out = []
    if run.failure == "exception":
        out.append(
            Finding("exception", dtype, None, f"the implementation raised {run.error}", case.regime, example=case)
        )
    elif run.failure is not None:  # crash or timeout
        shape = "x".join(map(str, case.x.shape))
        lo, hi = size_block(case.n)
        out.append(
            Finding(
                run.failure,
                dtype,
                None,
                f"{run.error} (input {shape}, {case.regime} rows; hidden sizes {lo}-{hi} are not run again in {dtype})",
                case.regime,
                example=case,
                detail=run.detail,
            )
        )
    for p in run.problems:
        check = "dtype" if "dtype" in p else "shape"
        out.append(Finding(check, dtype, "y", p, case.regime, example=case))
    if run.mutated:
        what = " and ".join(run.mutated)
        out.append(
            Finding(
                "mutation",
                dtype,
                None,
                f"the implementation wrote into its input {what} (in place); outputs are still judged "
                "against the original input",
                case.regime,
                example=case,
            )
        )
    return out


def first_difference(first: Run, second: Run) -> str | None:
    """The first output two calls on one input answered with different bits, or None."""
    for name in OUTPUTS:
        a, c = getattr(first, name), getattr(second, name)
        if a is not None and c is not None and a.shape == c.shape and a.dtype == c.dtype and (bits(a) != bits(c)).any():
            return name
    return None


def differing_calls(
    check: str,
    head: str,
    name: str,
    first: Run,
    second: Run,
    ex: oracles.Exact | None,
    limit: Bound | None,
    case: NormInput,
    dtype: str,
) -> Finding:
    """Two calls on one input answered ``name`` with different bits: a ``check`` finding whose message
    starts with ``head`` and gives both calls' errors."""
    a, c = getattr(first, name), getattr(second, name)
    errors = ""
    if ex is not None and limit is not None and ex.shape == a.shape:
        unit = ulp(limit.scale, limit.fmt)
        with np.errstate(all="ignore"):
            e1, e2 = (float(np.nanmax(np.abs(v.astype(np.float64) - ex.approx) / unit)) for v in (a, c))
        errors = f": max error {e1:.3g} ulp on the first call, {e2:.3g} ulp on the second"
    differ = int((bits(a) != bits(c)).sum())
    message = f"{head} on {differ} of {a.size} elements{errors}"
    return Finding(check, dtype, name, message, case.regime, example=case)


def nondeterminism(
    name: str, first: Run, second: Run, ex: oracles.Exact | None, limit: Bound | None, case: NormInput, dtype: str
) -> Finding:
    """Two identical calls answered ``name`` with different bits: a finding with both calls' errors."""
    head = f"two identical calls gave different {name}"
    return differing_calls("nondeterminism", head, name, first, second, ex, limit, case, dtype)

"""Infer what an implementation computes (RMSNorm or LayerNorm, weight offset) by probing it.

What the user states (``--kind``, ``--weight-offset``) is used as given; the probe
infers only what is missing.
"""

from __future__ import annotations

import numpy as np

import oracles
from normcheck.errors import UsageError
from normcheck.quantization import Scheme
from normcheck.target.isolation import IsolatedCandidate, WorkerLost
from normcheck.target.protocol import Run
from normcheck.target.torch_target import Candidate
from normcheck.verdict.bounds import ulp

_PROBE_N = 8
#: A probe within this many ulps of an oracle matches it (a wrong convention is off by far more).
MATCH_ULPS = 1e4


#: A quantized probe within this many steps of its element format matches (a wrong convention is off by many).
MATCH_QUANTIZED = 4.0


def quantized_error(run: Run, exact: oracles.Exact, scheme: Scheme) -> np.ndarray:
    """A quantized norm's values against the exact ``y`` divided by its own scales, saturated, in steps of its
    element format (NaN where no scale came back; 0 where the quotient is past the format or the value not
    finite)."""
    divisors = scheme.element_divisors(run.scales, run.given_scale, exact.shape)
    if run.y is None or divisors is None:
        return np.full(exact.shape, np.nan)
    with np.errstate(all="ignore"):
        quotient = exact.approx / divisors
    q = run.y.astype(np.float64)
    # What a value past the format's range became (saturated, NaN, wrapped) is the audit's finding; the
    # values within it tell the kind.
    inside = np.isfinite(q) & (np.abs(quotient) <= scheme.largest)
    return np.where(inside, np.abs(q - quotient) / ulp(quotient, scheme.element), 0.0)


def infer(
    candidate: Candidate | IsolatedCandidate, kind: str | None, offset: int | None, scheme: Scheme | None = None
) -> tuple[str, int]:
    """Run the implementation once in float32 and pick the (kind, offset) whose oracle it matches.

    The probe row has a nonzero mean (LayerNorm subtracts it, RMSNorm does not) and
    weights far from 0 and -1 (so ``w`` and ``1 + w`` differ). With ``kind`` given,
    an implementation that matches no offset is audited as ``kind`` with the closest
    offset (and fails on accuracy); without it, matching nothing is a usage error. A quantized norm
    (``scheme``) is matched by its values against the exact ``y`` over its own scales.
    """
    block = scheme.block if scheme is not None else None
    probe_n = -(-_PROBE_N // block) * block if block else _PROBE_N
    try:
        layout = candidate.describe(probe_n, "float32")
    except WorkerLost:
        layout = None  # building the module kills the worker: the audit reports it
    has_w = layout is not None and layout.has_weight
    kinds = [kind] if kind else ["rmsnorm", "layernorm"]
    offsets = [offset] if offset is not None else ([0, 1] if has_w else [0])
    if len(kinds) == 1 and len(offsets) == 1:
        return kinds[0], offsets[0]
    x = np.array([[3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.5, 6.0], [2.0, 7.0, 1.0, 8.0, 2.5, 8.0, 1.5, 3.0]], np.float32)
    w = np.array([0.5, 1.5, 2.0, 0.75, 1.25, 3.0, 0.25, 1.75], np.float32)
    b = np.array([0.5, -1.0, 0.25, 2.0, -0.5, 1.0, 0.0, -2.0], np.float32)
    if probe_n != _PROBE_N:  # a quantized norm's group of channels: the probe row repeated to fill it
        x, w, b = (np.resize(a, (*a.shape[:-1], probe_n)) for a in (x, w, b))
    run = None
    if layout is not None:
        wt, bt = (w if has_w else None), (b if layout.has_bias else None)
        run = candidate.run(x, wt, bt, None, residual=np.zeros_like(x) if candidate.fused else None)
    if layout is None or run is None or run.y is None or run.y.shape != x.shape:  # (no layout: no run)
        if kind:  # the implementation fails anyway: let the audit report that as a finding
            return kind, offsets[0]
        why = "the module could not be built" if run is None else run.error or "; ".join(run.problems) or "no output"
        raise UsageError(f"cannot probe {candidate.name} to infer --kind ({why}); pass --kind")
    scores = []
    for k in kinds:
        for off in offsets:
            if k == "rmsnorm":
                exact = oracles.rms_norm(x, wt, layout.eps, off)
            else:
                exact = oracles.layer_norm(x, wt, bt, layout.eps, off)
            with np.errstate(all="ignore"):
                err = exact.ulp_error(run.y, "float32") if scheme is None else quantized_error(run, exact, scheme)
            scores.append((float(np.max(np.where(np.isnan(err), np.inf, err))), k, off))
    best, k, off = min(scores)
    if best < (MATCH_ULPS if scheme is None else MATCH_QUANTIZED) or kind is not None:
        return k, off
    offset_note = f", weight offset {off}" if has_w else ""
    raise UsageError(
        f"{candidate.name} matches neither RMSNorm nor LayerNorm on a probe (closest: {k}{offset_note}, "
        f"{best:.3g} ulp off); pass --kind to audit it as one"
    )

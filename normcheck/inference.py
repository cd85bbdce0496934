"""Infer what an implementation computes (RMSNorm or LayerNorm, weight offset) by probing it."""

from __future__ import annotations

import numpy as np

import oracles
from normcheck.candidate import Candidate
from normcheck.errors import UsageError

_PROBE_N = 8


def infer(candidate: Candidate, kind: str | None, offset: int | None) -> tuple[str, int]:
    """Run the implementation once in float32 and pick the (kind, offset) whose oracle it matches.

    The probe row has a nonzero mean (LayerNorm subtracts it, RMSNorm does not) and
    weights far from 0 and -1 (so ``w`` and ``1 + w`` differ).
    """
    has_w, has_b = candidate.has_parameters(_PROBE_N, "float32")
    kinds = [kind] if kind else ["rmsnorm", "layernorm"]
    offsets = [offset] if offset is not None else ([0, 1] if has_w else [0])
    if len(kinds) == 1 and len(offsets) == 1:
        return kinds[0], offsets[0]
    x = np.array([[3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.5, 6.0], [2.0, 7.0, 1.0, 8.0, 2.5, 8.0, 1.5, 3.0]], np.float32)
    w = np.array([0.5, 1.5, 2.0, 0.75, 1.25, 3.0, 0.25, 1.75], np.float32)
    b = np.array([0.5, -1.0, 0.25, 2.0, -0.5, 1.0, 0.0, -2.0], np.float32)
    wt, bt = (w if has_w else None), (b if has_b else None)
    run = candidate.run(x, wt, bt, None)
    if run.y is None or run.y.shape != x.shape:
        if kind:  # the implementation fails anyway: let the audit report that as a finding
            return kind, offsets[0]
        why = run.error or "; ".join(run.problems) or "no output"
        raise UsageError(f"cannot probe {candidate.name} to infer --kind ({why}); pass --kind")
    eps = candidate.eps(_PROBE_N, "float32")
    scores = []
    for k in kinds:
        for off in offsets:
            if k == "rmsnorm":
                exact = oracles.rms_norm(x, wt, eps, off)
            else:
                exact = oracles.layer_norm(x, wt, bt, eps, off)
            scores.append((float(np.nanmax(exact.ulp_error(run.y, "float32"))), k, off))
    scores.sort()
    best, k, off = scores[0]
    if not best < 1e4:
        raise UsageError(f"{candidate.name} matches neither RMSNorm nor LayerNorm on a probe; pass --kind")
    return k, off

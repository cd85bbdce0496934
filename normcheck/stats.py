"""ULP-error statistics of one output in one dtype and regime: what every report reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The binary exponents of the ULP-error histograms' edges past 0: 2**-10 to 2**30.
_LOWEST, _HIGHEST = -10, 30
#: Bins of the ULP-error histograms: 0, then powers of two from 2**-10 to 2**30.
HIST_EDGES = np.concatenate([[0.0], 2.0 ** np.arange(_LOWEST, _HIGHEST + 1)])


@dataclass(frozen=True)
class Errors:
    """The errors of one output on one input, per judged element, for :meth:`ErrorStats.add`."""

    output: str
    signed: np.ndarray  #: the signed error in ulps of each element's scale
    bounds: dict[str, np.ndarray]  #: per tier (loosest first), its effective bound, same unit
    plain: np.ndarray  #: the plain ULP error, NaN where the element cancels
    binade: np.ndarray  #: floor(log2|exact|)
    n: np.ndarray  #: the hidden size


def log2_histogram(a: np.ndarray) -> np.ndarray:
    """Counts of ``a`` (non-negative) in the bins of :data:`HIST_EDGES`, as ``np.histogram`` counts them (each bin
    half-open, the last closed; values past the ends in the end bins, NaN nowhere), from the binary exponents
    instead of a sort (a tenth of the time on a default audit's 0.5 M errors)."""
    last = HIST_EDGES.size - 2
    # a in [2**(e-1), 2**e): the bin that starts at 2**(e-1)
    index = np.clip(np.frexp(np.minimum(a, HIST_EDGES[-1]))[1] - _LOWEST, 0, last)
    index[a < HIST_EDGES[1]] = 0
    return np.bincount(index[~np.isnan(a)], minlength=last + 1)


class ErrorStats:
    """Errors of one output in one dtype and regime.

    The unit is the ulp of each element's scale S, the magnitude of the terms it is
    computed from (docs/bounds.md): it reads as the ULP error where the element does
    not cancel, and stays meaningful where it does. The plain ULP error is kept too,
    for the elements that do not cancel.
    """

    def __init__(self) -> None:
        self._signed: list[np.ndarray] = []
        self._plain: list[np.ndarray] = []
        self._binade: list[np.ndarray] = []
        self._n: list[np.ndarray] = []
        self.max_bound: dict[str, float] = {}  #: per tier: the largest bound seen, in the same unit
        self.use: dict[str, float] = {}  #: per tier: the largest error / bound ratio seen (below 1 for a pass)
        #: :meth:`summary` and :meth:`distribution` as last computed; emptied by what adds errors
        self._figures: dict[str, dict] = {}

    def add(self, errors: Errors) -> None:
        """The errors of one output on one input (nothing where no element was judged)."""
        if not errors.signed.size:
            return
        self._figures.clear()
        self._signed.append(errors.signed)
        self._plain.append(errors.plain)
        self._binade.append(errors.binade.astype(np.int32))
        self._n.append(errors.n.astype(np.int32, copy=False))
        for tier, bound in errors.bounds.items():
            self.max_bound[tier] = max(self.max_bound.get(tier, 0.0), float(np.max(bound)))
            with np.errstate(all="ignore"):
                ratio = np.abs(errors.signed) / bound
            ratio = ratio[np.isfinite(ratio)]
            self.use[tier] = max(self.use.get(tier, 0.0), float(ratio.max()) if ratio.size else 0.0)

    def merge(self, other: ErrorStats) -> None:
        """Fold another collector (another regime) into this one."""
        self._figures.clear()
        self._signed += other._signed
        self._plain += other._plain
        self._binade += other._binade
        self._n += other._n
        for mine, theirs in ((self.max_bound, other.max_bound), (self.use, other.use)):
            for tier, value in theirs.items():
                mine[tier] = max(mine.get(tier, 0.0), value)

    def distribution(self) -> dict:
        """Histogram of |error| (log bins) and max / mean error by |exact| binade and by hidden size."""
        if "distribution" not in self._figures:
            self._figures["distribution"] = self._distribution()
        return self._figures["distribution"]

    def _distribution(self) -> dict:
        if not self._signed:
            return {}
        a = np.abs(np.concatenate(self._signed))
        b, n = np.concatenate(self._binade), np.concatenate(self._n)
        counts = log2_histogram(a)

        def by(keys: np.ndarray) -> dict[str, dict[str, float]]:
            # One stable sort: each group holds its errors in their order (the mean sums them as a[keys == k]).
            # Keys that fit 16 bits sort by radix (a third of the time for a default audit's 0.5 M errors).
            small = keys.astype(np.int16)
            order = np.argsort(small if np.array_equal(small, keys) else keys, kind="stable")
            ordered = keys[order]
            starts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
            firsts = ordered[np.concatenate(([0], starts))]
            return {
                str(int(k)): {"count": int(g.size), "max": float(g.max()), "mean": float(g.mean())}
                for k, g in zip(firsts, np.split(a[order], starts))
            }

        return {
            "histogram": {"edges": HIST_EDGES.tolist(), "counts": counts.tolist()},
            "by_binade": by(b),
            "by_hidden_size": by(n),
        }

    def summary(self) -> dict[str, float | int | None]:
        """Count, largest, mean, 99th percentile and signed mean of the errors, the largest plain ULP error, and
        per tier the largest bound and its use."""
        if "summary" not in self._figures:
            self._figures["summary"] = self._summary()
        return self._figures["summary"]

    def _summary(self) -> dict[str, float | int | None]:
        if not self._signed:
            return {"count": 0}
        s = np.concatenate(self._signed)
        a = np.abs(s)
        plain = np.abs(np.concatenate(self._plain))
        plain = plain[np.isfinite(plain)]
        return {
            "count": int(a.size),
            "max": float(a.max()),
            "mean": float(a.mean()),
            "p99": float(np.percentile(a, 99)),
            "signed_mean": float(s.mean()),
            "max_ulp": float(plain.max()) if plain.size else None,
            **{f"max_{tier}": value for tier, value in self.max_bound.items()},
            **{f"{tier}_use": value for tier, value in self.use.items()},
        }

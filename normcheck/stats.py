"""ULP-error statistics of one output in one dtype and regime: what every report reads."""

from __future__ import annotations

import numpy as np

#: Bins of the ULP-error histograms: 0, then powers of two from 2**-10 to 2**30.
HIST_EDGES = np.concatenate([[0.0], 2.0 ** np.arange(-10, 31)])


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
        self.max_sharp = self.max_rigorous = 0.0  #: the largest bounds seen, in the same unit
        self.sharp_use = self.rigorous_use = 0.0  #: the largest error / bound ratios seen (below 1 for a pass)

    def add(
        self,
        signed: np.ndarray,
        sharp: np.ndarray,
        rigorous: np.ndarray,
        plain: np.ndarray,
        binade: np.ndarray,
        n: np.ndarray,
    ) -> None:
        """Per element: the signed error, the sharp and rigorous bounds (ulps of scale), the plain
        ULP error (NaN where the element cancels), ``floor(log2|exact|)`` and the hidden size."""
        if not signed.size:
            return
        self._signed.append(signed)
        self._plain.append(plain)
        self._binade.append(binade.astype(np.int32))
        self._n.append(n.astype(np.int32))
        self.max_sharp = max(self.max_sharp, float(np.max(sharp)))
        self.max_rigorous = max(self.max_rigorous, float(np.max(rigorous)))
        with np.errstate(all="ignore"):
            for attr, bound in (("sharp_use", sharp), ("rigorous_use", rigorous)):
                ratio = np.abs(signed) / bound
                ratio = ratio[np.isfinite(ratio)]
                if ratio.size:
                    setattr(self, attr, max(getattr(self, attr), float(ratio.max())))

    def merge(self, other: ErrorStats) -> None:
        """Fold another collector (another regime) into this one."""
        self._signed += other._signed
        self._plain += other._plain
        self._binade += other._binade
        self._n += other._n
        for attr in ("max_sharp", "max_rigorous", "sharp_use", "rigorous_use"):
            setattr(self, attr, max(getattr(self, attr), getattr(other, attr)))

    def distribution(self) -> dict:
        """Histogram of |error| (log bins) and max / mean error by |exact| binade and by hidden size."""
        if not self._signed:
            return {}
        a = np.abs(np.concatenate(self._signed))
        b, n = np.concatenate(self._binade), np.concatenate(self._n)
        counts, _ = np.histogram(np.clip(a, HIST_EDGES[0], HIST_EDGES[-1]), bins=HIST_EDGES)

        def by(keys: np.ndarray) -> dict[str, dict[str, float]]:
            return {
                str(int(k)): {
                    "count": int((keys == k).sum()),
                    "max": float(a[keys == k].max()),
                    "mean": float(a[keys == k].mean()),
                }
                for k in np.unique(keys)
            }

        return {
            "histogram": {"edges": HIST_EDGES.tolist(), "counts": counts.tolist()},
            "by_binade": by(b),
            "by_hidden_size": by(n),
        }

    def summary(self) -> dict[str, float | int | None]:
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
            "max_sharp": self.max_sharp,
            "max_rigorous": self.max_rigorous,
            "sharp_use": self.sharp_use,
            "rigorous_use": self.rigorous_use,
        }

"""The bound tiers, as data: each has a name, the error it allows per element, the formula behind it
and what crossing it means.

A :class:`~normcheck.verdict.bounds.Bound` holds its tiers loosest first. The first is a proof (beyond
it no correct implementation can be); each later one is at most the ones before it (:func:`effective`).
A verdict names the loosest tier an error crosses. Adding a tier is computing one more :class:`Tier`
in ``verdict.bounds``: the judge, the statistics and the reports read the list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The tiers' names, loosest first, as the reports show them.
TIERS = ("rigorous", "sharp")


@dataclass(frozen=True)
class Tier:
    """One tier of the bound on one output: absolute errors allowed per element (float64)."""

    name: str
    allowed: np.ndarray
    reason: str  #: the formula of ``allowed``
    meaning: str  #: what an error beyond it means, in a finding's words


def effective(tiers: tuple[Tier, ...]) -> list[np.ndarray]:
    """Each tier's allowance, tightened by the looser ones before it (a later tier never allows more)."""
    out: list[np.ndarray] = []
    for t in tiers:
        out.append(t.allowed if not out else np.minimum(out[-1], t.allowed))
    return out


def crossing(error: float, allowed: list[float], tiers: tuple[Tier, ...], crossed: int) -> str:
    """How an error of ``error`` ulp reads against the tiers (``allowed``: each one's, in ulp), the loosest
    one it crosses being ``tiers[crossed]``."""
    t, a = tiers[crossed], allowed[crossed]

    def times(b: float) -> str:
        return f"{error / b:.3g}x" if b > 0 else "past"  # (a bound of 0: only the exact value was allowed)

    if crossed == 0:
        how = f"beyond the {t.name} bound ({a:.3g} ulp: {t.meaning})"
    else:
        looser = "; ".join(f"the {s.name} bound, {b:.3g} ulp, is not crossed" for s, b in zip(tiers, allowed[:crossed]))
        how = f"{times(a)} the {t.name} bound ({a:.3g} ulp, {t.meaning}; {looser})"
    tighter = zip(tiers[crossed + 1 :], allowed[crossed + 1 :])
    return how + "".join(f", {times(b)} the {s.name} bound" for s, b in tighter)

"""Name the bug: compare an implementation's numbers with emulations of every convention and bug class."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normcheck.diagnosis.emulations import Emulation, emulations_for, rounds_here, run_emulation
from normcheck.verdict.bounds import ulp
from oracles import FloatFormat

#: A bug class is named only if its emulation reproduces at least this fraction of the output.
MIN_AGREEMENT = 0.5


@dataclass(frozen=True)
class Match:
    """How closely an emulation reproduces the implementation on one output."""

    name: str
    correct: bool
    description: str
    agreement: float  #: fraction of elements bit-identical (NaN matching NaN)
    close: float  #: fraction within one ulp (NaN and inf must coincide)
    mean_distance: float  #: mean |candidate - emulation| in ulps over finite pairs

    @property
    def score(self) -> tuple[float, float, float]:
        return (self.agreement, self.close, -self.mean_distance)


@dataclass(frozen=True)
class Diagnosis:
    """The best-matching bug class (or None) with the evidence behind it."""

    bug: str | None
    evidence: str
    matches: tuple[Match, ...]


def compare(candidate: np.ndarray, emulated: np.ndarray, fmt: FloatFormat) -> tuple[float, float, float]:
    """(bit-identical fraction, within-one-ulp fraction, mean distance in ulps)."""
    c = np.asarray(candidate, dtype=np.float64).ravel()
    e = np.asarray(emulated, dtype=np.float64).ravel()
    if c.shape != e.shape or c.size == 0:
        return 0.0, 0.0, float("inf")
    finite = np.isfinite(c) & np.isfinite(e)
    same = (c == e) | (np.isnan(c) & np.isnan(e))
    with np.errstate(all="ignore"):
        dist = np.abs(c - e) / ulp(e, fmt)
    close = (finite & (dist <= 1.0)) | (same & ~finite)
    mean_distance = float(np.mean(dist[finite])) if finite.any() else float("inf")
    return float(np.mean(same)), float(np.mean(close)), mean_distance


def diagnose(
    kind: str,
    output: str,
    candidate: np.ndarray,
    fmt: FloatFormat,
    *,
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    grad: np.ndarray | None,
    eps: float,
    offset: int,
) -> Diagnosis:
    """Run every emulation on the failing input and name the bug class the output matches best.

    A bug is named only when its emulation reproduces at least ``MIN_AGREEMENT``
    of the output and agrees with the implementation better than every correct
    convention and every other bug class does (on all-zero rows several bug
    classes give the same NaNs: such an input singles out none). A bug class that
    rounds to the input or parameter dtype is not tried where that dtype is the
    compute dtype (:func:`rounds_here`): there it is only another summation order.
    """
    matches = []
    for emu in emulations_for(kind, offset):
        if not rounds_here(emu, x, weight):
            continue
        try:
            outs = run_emulation(emu, x, weight, bias, grad if output != "y" else None, eps, offset)
        except Exception:
            continue
        if output not in outs:
            continue
        matches.append(Match(emu.name, emu.correct, emu.description, *compare(candidate, outs[output], fmt)))
    return name_bug(matches, output)


def name_bug(matches: list[Match], output: str) -> Diagnosis:
    """The diagnosis from every emulation's match on ``output``: the best bug class where it reproduces at
    least ``MIN_AGREEMENT`` of it, better than every correct convention and than every other bug class."""
    matches.sort(key=lambda m: m.score, reverse=True)
    bugs = [m for m in matches if not m.correct]
    correct = [m for m in matches if m.correct]
    best_correct = correct[0] if correct else None
    rival = next((m for m in bugs[1:] if not same_class(m.name, bugs[0].name)), None) if bugs else None
    if (
        bugs
        and max(bugs[0].agreement, bugs[0].close) >= MIN_AGREEMENT
        and (best_correct is None or bugs[0].score > best_correct.score)
        and rival is not None
        and rival.score == bugs[0].score
    ):
        return Diagnosis(
            None,
            f"'{bugs[0].name}' and '{rival.name}' reproduce {output} equally well on this input "
            f"({bugs[0].agreement:.0%} bit for bit): no one bug class is singled out",
            tuple(matches),
        )
    if (
        bugs
        and max(bugs[0].agreement, bugs[0].close) >= MIN_AGREEMENT
        and (best_correct is None or bugs[0].score > best_correct.score)
    ):
        b = bugs[0]
        vs = ""
        if best_correct is not None:
            vs = f"; best correct convention '{best_correct.name}': {best_correct.agreement:.0%}"
        return Diagnosis(
            b.name,
            f"reproduces '{b.name}' ({b.description}) bit for bit on {b.agreement:.0%} of "
            f"{output} (within one ulp on {b.close:.0%}){vs}",
            tuple(matches),
        )
    closest = matches[0].name if matches else "none"
    return Diagnosis(
        None, f"no known bug class matches better than a correct convention (closest: {closest})", tuple(matches)
    )


def same_class(a: str, b: str) -> bool:
    """Whether two emulations are variants of one bug class ("low-precision statistic" and its "(bf16)")."""
    return a.startswith(b) or b.startswith(a)


def convention_match(
    kind: str,
    offset: int,
    candidate: np.ndarray,
    fmt: FloatFormat,
    *,
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    eps: float,
) -> dict[str, float]:
    """Fraction of outputs bit-identical to each correct convention's (for 'which convention is this')."""
    out = {}
    for emu in emulations_for(kind, offset):
        if not emu.correct:
            continue
        try:
            y = run_emulation(emu, x, weight, bias, None, eps, offset)["y"]
        except Exception:
            continue
        out[emu.name] = compare(candidate, y, fmt)[0]
    return out


__all__ = ["Diagnosis", "Emulation", "Match", "compare", "convention_match", "diagnose", "name_bug"]

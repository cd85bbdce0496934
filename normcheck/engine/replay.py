"""The replay check: the earliest answers of each instance, asked again at the end of the audit.

An implementation is built once per hidden size and dtype and keeps its state between calls. A kernel
right for its first calls and wrong later (a stale workspace, an autotuner switching configurations
after warm-up, a captured CUDA graph replaying stale pointers) passes every check that judges a call on
its own. So each instance is called at least :data:`MIN_CALLS` times (the first row of the first input
it was given, forward only, not judged), then its first :data:`SAMPLE` inputs run again and must answer
with the same bits as the first time. An instance rebuilt since (a new worker after a crash or a
timeout, parameters kept in another dtype) is not the one that answered first: it is not compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

import oracles
from normcheck.engine.calls import Caller
from normcheck.engine.judge import differing_calls, first_difference
from normcheck.result import Finding
from normcheck.strategies import NormInput
from normcheck.target.protocol import Run
from normcheck.verdict.bounds import Bound

#: Calls every instance gets in an audit, at least.
MIN_CALLS = 100
#: The earliest inputs of each instance asked again at the end.
SAMPLE = 3

#: The exact outputs and their bounds of an input: ``(case, dtype, grad) -> (exact, limits)``.
ExactOf = Callable[[NormInput, str, bool], tuple[dict[str, oracles.Exact], dict[str, Bound]]]


@dataclass
class _Instance:
    """What one (hidden size, dtype) instance was asked: how often, its first answers, what it is topped up with."""

    calls: int = 0
    first: list[tuple[NormInput, bool, Run, tuple]] = field(default_factory=list)
    probe: NormInput | None = None  #: what it is called on to reach MIN_CALLS: one row of its first input


class Replay:
    """Watches every call of a :class:`Caller` (:meth:`observe`), then replays (:meth:`findings`)."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self._instances: dict[tuple[int, str], _Instance] = {}
        self._recording = True
        caller.observers.append(self.observe)

    def _identity(self, dtype: str) -> tuple:
        """What changes when the instances of ``dtype`` are rebuilt."""
        return getattr(self.caller.c, "restarts", 0), self.caller.kept_parameters.get(dtype)

    def observe(self, case: NormInput, dtype: str, grad: bool, run: Run, keep: bool) -> None:
        """One call that returned an answer."""
        inst = self._instances.setdefault((case.n, dtype), _Instance())
        inst.calls += run.calls
        if self._recording and keep and len(inst.first) < SAMPLE:
            inst.first.append((case, grad, run, self._identity(dtype)))
        if inst.probe is None:
            inst.probe = _one_row(case)

    def findings(self, exact: ExactOf) -> list[Finding]:
        """Call each instance up to :data:`MIN_CALLS` times, then its earliest inputs again: a finding
        where an answer's bits changed."""
        self._recording = False
        for (_n, dtype), inst in self._instances.items():
            if inst.calls < MIN_CALLS and inst.probe is not None:
                self.caller.repeat(inst.probe, dtype, MIN_CALLS - inst.calls)
        out = []
        for (_n, dtype), inst in self._instances.items():
            for case, grad, first, identity in inst.first:
                if identity != self._identity(dtype):
                    continue
                again = self.caller.run(case, dtype, grad=grad, keep=False)
                name = None if again is None else first_difference(first, again)
                if again is not None and name is not None:
                    ex, limits = exact(case, dtype, name != "y")
                    head = f"called again after {inst.calls} calls, the same instance gave different {name}"
                    out.append(
                        differing_calls("replay", head, name, first, again, ex.get(name), limits.get(name), case, dtype)
                    )
        return out


def _one_row(case: NormInput) -> NormInput:
    """``case``'s first row, as a 1 x n input: the instance it is called on is the same, the call the cheapest."""

    def first(a: np.ndarray) -> np.ndarray:
        return a.reshape(-1, case.n)[:1]

    residual = None if case.residual is None else first(case.residual)
    return replace(case, x=first(case.x), grad=first(case.grad), residual=residual, strided=False)

"""Slow is not hung: predict how long a call will take from the calls that came before it.

A call on ``rows`` rows of ``n`` elements is taken to cost at most ``rows * f(n)``, with ``f``, the
time per row, growing with ``n``: one row per program (a Triton kernel under its CPU interpreter)
costs about the same per row at every short ``n``, a vectorized kernel costs per element. So a
measured call on ``rows_j`` rows of ``n_j >= n`` bounds ``f(n)`` by ``seconds_j / rows_j`` (its fixed
overhead counted in), and the least of these bounds is the prediction's rate. Timing noise only adds
time, so the least bound is also the one least disturbed by it. Nothing is predicted where no call
as long as ``n`` was measured.

An input predicted to take longer than the timeout is not run (the audit reports it as too slow
at its size, not as a finding); one that runs may take ``SLACK`` times its prediction, or the
timeout where that is longer, before it counts as hung.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

#: How many times its prediction a call may take before it is a ``timeout`` (the timeout, if longer).
SLACK = 4.0


@dataclass
class Pace:
    """The calls measured so far of one kind (a dtype, with or without gradients), and what they predict."""

    #: The least seconds per row measured, by hidden size (a row of ``n`` costs at most any longer row's).
    per_row: dict[int, float] = field(default_factory=dict)

    def record(self, rows: int, n: int, seconds: float) -> None:
        """Add a call that returned: ``seconds`` (wall time) on ``rows`` rows of ``n``."""
        rate = seconds / rows
        self.per_row[n] = min(rate, self.per_row.get(n, rate))

    def predict(self, rows: int, n: int) -> float | None:
        """At most how many seconds a call on ``rows`` rows of ``n`` should take, or None if no call as
        long as ``n`` was measured."""
        rates = [rate for size, rate in self.per_row.items() if size >= n]
        return rows * min(rates) if rates else None


def too_slow(predicted: float | None, timeout: float) -> bool:
    """Whether a call predicted to take ``predicted`` seconds is not to be run (``timeout`` 0: no limit)."""
    return timeout > 0 and predicted is not None and predicted > timeout


def time_limit(predicted: float | None, timeout: float) -> float:
    """The seconds a call may take before it counts as hung: the timeout, or ``SLACK`` times a longer
    prediction (0, no limit, stays 0)."""
    if timeout <= 0 or predicted is None:
        return timeout
    return max(timeout, SLACK * predicted)


def add_time(timing: dict[str, float], part: str, seconds: float) -> None:
    """Count ``seconds`` more to ``timing[part]`` (an audit's time per part, ``AuditResult.timing``)."""
    timing[part] = timing.get(part, 0.0) + seconds


@contextmanager
def clocked(timing: dict[str, float], part: str) -> Iterator[None]:
    """Add the time the block takes to ``timing[part]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        add_time(timing, part, time.perf_counter() - start)


class TimeoutExpired(Exception):
    """The implementation did not return in time."""


@contextmanager
def interrupt_after(seconds: float) -> Iterator[None]:
    """Raise :class:`TimeoutExpired` in the main thread after ``seconds`` (no-op elsewhere, or for 0).

    A signal interrupts Python code only: a hang inside C needs the worker process.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeoutExpired(f"no result within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

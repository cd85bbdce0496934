"""Calling the implementation under audit: its parameters in the dtype it keeps them in, and a bounded
cost for an implementation that crashes, hangs or is too slow at a size."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np

from normcheck.engine.plan import row_count
from normcheck.strategies import NormInput
from normcheck.target.isolation import IsolatedCandidate, WorkerLost
from normcheck.target.protocol import Layout, Run
from normcheck.target.torch_target import Candidate
from normcheck.timing import Pace, add_time, time_limit, too_slow
from oracles import FloatFormat, resolve_format, round_floats

#: Failures that cost the worker process: their hidden-size block is not run again in that dtype.
LOST_FAILURES = ("crash", "timeout")
#: Crashes and timeouts per dtype after which, if they outnumber the calls that returned, the dtype's
#: remaining inputs are skipped (an implementation that dies or hangs everywhere costs a few of them).
MAX_LOST = 3
#: How torch refuses parameters of another dtype than it computes in ("mixed dtype (CPU): expect parameter
#: to have scalar type of Float", "expected scalar type Float but found Half").
PARAMETER_DTYPE_ERROR = re.compile(r"dtype|scalar type", re.IGNORECASE)
#: The dtype parameters are kept in where a module refuses them in the input dtype.
KEPT_DTYPE = "float32"


def size_block(n: int) -> tuple[int, int]:
    """The hidden sizes sharing ``n``'s power-of-two block (``(2049, 4096)`` for 4097...): kernels pick
    their block size, and often their code path, by it, so a crash at one size predicts the others."""
    hi = 1 << max(0, (n - 1).bit_length())
    return hi // 2 + 1 if hi > 1 else 1, hi


@dataclass
class _Lost:
    """Crashes and timeouts of one dtype: the size blocks they hit, and the inputs skipped since."""

    blocks: set[tuple[int, int]] = field(default_factory=set)
    events: int = 0
    returned: int = 0  #: calls that came back (whatever their answer)
    skipped: int = 0

    def gave_up(self) -> bool:
        return self.events >= MAX_LOST and self.events > self.returned


class Caller:
    """Runs one implementation (a :class:`Candidate`, in this process or a worker) on audit inputs.

    What the calls teach is kept here: the sizes that crash or hang, the time per row, and the dtypes
    whose parameters had to stay in float32; :attr:`timing` adds up where the time went.
    """

    def __init__(self, candidate: Candidate | IsolatedCandidate, kind: str, timing: dict[str, float]) -> None:
        self.c, self.kind, self.timing = candidate, kind, timing
        self._lost: dict[str, _Lost] = {}
        #: Dtypes whose parameter dtype is settled: a call answered, or float32 parameters were tried.
        self._settled: set[str] = set()
        self._pace: dict[tuple[str, bool], Pace] = {}  #: per dtype and gradients on or off
        #: Inputs predicted to take longer than the timeout, not run: ``{"dtype", "shape", "regime", "predicted_s"}``.
        self.too_slow: list[dict] = []
        #: Per dtype whose parameters were kept in float32 instead (the module refused them in that dtype): why.
        self.kept_parameters: dict[str, str] = {}
        #: Called with ``(case, dtype, grad, run, keep)`` after every call that answered.
        self.observers: list[Callable[[NormInput, str, bool, Run, bool], None]] = []

    def layout(self, n: int, dtype: str) -> Layout:
        return self.c.describe(n, dtype)

    def params(self, case: NormInput, dtype: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The weight and bias the implementation gets for ``case``, in the dtype it stores them in."""
        layout = self.layout(case.n, dtype)
        pfmt = resolve_format(layout.parameter_dtype)
        w = round_floats(case.weight, pfmt) if layout.has_weight else None
        b = round_floats(case.bias, pfmt) if layout.has_bias and self.kind == "layernorm" else None
        return w, b

    def output_format(self, name: str, case: NormInput, dtype: str) -> FloatFormat:
        """``dw`` and ``db`` come in the parameters' dtype, every other output in the input dtype."""
        return resolve_format(dtype if name not in ("dw", "db") else self.layout(case.n, dtype).parameter_dtype)

    def skipped(self) -> dict[str, int]:
        """Inputs not run per dtype, because of crashes or timeouts at their hidden size."""
        return {d: lost.skipped for d, lost in self._lost.items() if lost.skipped}

    def run(
        self,
        case: NormInput,
        dtype: str,
        *,
        grad: bool,
        keep: bool = True,
        meanwhile: Callable[[], None] | None = None,
    ) -> Run | None:
        """Call the implementation on ``case``; None where earlier crashes or timeouts say not to.

        A crash or timeout is not triggered again in the same hidden-size block
        (:func:`size_block`) and dtype, and after :data:`MAX_LOST` of them, if they
        outnumber the calls that came back, the dtype's remaining inputs are skipped:
        an implementation that dies or hangs costs a bounded time. An input that the calls before it
        predict to take longer than the timeout is not run either (:mod:`normcheck.timing`).
        ``keep=False`` (hypothesis shrinking): the inputs not run are not counted.

        ``meanwhile`` (the exact side of the same input, say) runs while a worker process computes; in
        this process, or where the call is not made, it does not run. The implementation's clock counts
        the time the audit waited for it and the worker's time on the call that overlapped ``meanwhile``
        (:data:`~normcheck.result.TIMED`: ``overlapped``).
        """
        return self._call(case, dtype, grad=grad, keep=keep, times=1, meanwhile=meanwhile)

    def repeat(self, case: NormInput, dtype: str, times: int) -> Run | None:
        """Call the implementation forward ``times`` times on ``case`` (answers not judged), in batches each
        predicted to take at most the timeout: the run standing for the last batch, or the first failed one
        (:attr:`Run.calls` the calls it stands for); None where not run, as for :meth:`run`."""
        run = None
        while times > 0:
            per_call = self._pace.setdefault((dtype, False), Pace()).predict(row_count(case), case.n)
            timeout = self.c.timeout
            batch = times if not per_call or timeout <= 0 else max(1, min(times, int(timeout / per_call)))
            run = self._call(case, dtype, grad=False, keep=False, times=batch)
            if run is None or run.failure is not None:
                return run
            times -= batch
        return run

    def _call(
        self,
        case: NormInput,
        dtype: str,
        *,
        grad: bool,
        keep: bool,
        times: int,
        meanwhile: Callable[[], None] | None = None,
    ) -> Run | None:
        """:meth:`run` (``times`` 1) and :meth:`repeat` (forward only)."""
        lost = self._lost.setdefault(dtype, _Lost())
        if size_block(case.n) in lost.blocks or lost.gave_up():
            lost.skipped += keep
            return None
        g = case.grad if grad and self.c.supports_grad else None
        rows, timeout = row_count(case), self.c.timeout
        pace = self._pace.setdefault((dtype, g is not None), Pace())
        predicted = pace.predict(rows * times, case.n)
        if too_slow(predicted, timeout):
            if keep:
                entry = {"dtype": dtype, "shape": list(case.x.shape), "regime": case.regime, "predicted_s": predicted}
                self.too_slow.append(entry)
            return None
        try:
            w, b = self.params(case, dtype)
        except WorkerLost as exc:  # building the module took the worker down
            run = Run(failure=exc.failure, error=exc.error, detail=exc.detail)
        else:
            spent = 0.0  # in meanwhile
            start = time.perf_counter()
            with self._allowing(time_limit(predicted, timeout)):
                if times > 1:
                    run = self.c.repeat(times, case.x, w, b, case.residual)
                elif meanwhile is not None and isinstance(self.c, IsolatedCandidate):
                    work = meanwhile

                    def timed() -> None:
                        nonlocal spent
                        begin = time.perf_counter()
                        work()
                        spent = time.perf_counter() - begin

                    run = self.c.run(case.x, w, b, g, case.strided, residual=case.residual, meanwhile=timed)
                else:
                    run = self.c.run(case.x, w, b, g, case.strided, residual=case.residual)
            overlapped = min(spent, run.handled or 0.0)
            took = time.perf_counter() - start - spent + overlapped
            add_time(self.timing, "implementation", took)
            if overlapped:
                add_time(self.timing, "overlapped", overlapped)
            if run.failure is None:
                pace.record(rows * run.calls, case.n, took)
            elif run.failure == "timeout" and predicted is not None:
                run = replace(run, error=f"{run.error}; {predicted:.3g} s predicted from the calls before it")
            add_time(self.timing, "kernels", run.seconds)
        if run.failure in LOST_FAILURES:
            lost.blocks.add(size_block(case.n))
            lost.events += 1
        else:
            lost.returned += 1
        if run.failure is None:
            self._settled.add(dtype)
            for observe in self.observers:
                observe(case, dtype, g is not None, run, keep)
        elif self._refuses_parameters(run, dtype):
            return self._keep_parameters(case, dtype, run, grad=grad, keep=keep)
        return run

    def _refuses_parameters(self, run: Run, dtype: str) -> bool:
        """Whether ``run``, before any answer in ``dtype``, is a torch module refusing parameters in ``dtype``."""
        return (
            run.failure == "exception"
            and dtype not in self._settled
            and dtype != KEPT_DTYPE
            and self.c.framework == "torch"
            and PARAMETER_DTYPE_ERROR.search(run.error or "") is not None
        )

    def _keep_parameters(self, case: NormInput, dtype: str, refused: Run, *, grad: bool, keep: bool) -> Run:
        """Call again with the parameters in float32 (as transformers keeps modules that compute in float32
        with float32 weights): where that answers, they stay in float32 for ``dtype``, and the report says so."""
        self._settled.add(dtype)
        self.c.keep_parameters(dtype, KEPT_DTYPE)
        run = self.run(case, dtype, grad=grad, keep=keep)
        if run is not None and run.failure is None:
            self.kept_parameters[dtype] = (
                f"parameters kept in {KEPT_DTYPE}: the implementation refuses {dtype} ones ({refused.error})"
            )
            return run
        self.c.keep_parameters(dtype, None)
        return refused

    @contextmanager
    def _allowing(self, seconds: float) -> Iterator[None]:
        """Let the implementation's calls inside the block take ``seconds`` before they count as hung."""
        timeout, self.c.timeout = self.c.timeout, seconds
        try:
            yield
        finally:
            self.c.timeout = timeout

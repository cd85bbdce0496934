"""Run the implementation in a worker process, out of reach of the auditor that judges it.

The auditor (oracle, search, checks, report) stays in the calling process; a
worker process builds the module, receives copies of the inputs and sends back
outputs and gradients. A worker that dies (segfault, abort, ``exit``, an
out-of-memory kill, a broken CUDA context) or does not answer in time (a hang in
Python, in C or on the GPU) is stopped and replaced, and the call comes back as a
:class:`~normcheck.target.protocol.Run` whose failure is ``crash`` or ``timeout``, with
the signal and the worker's last words (Python's ``faulthandler`` stack). From
the first loss on a spare worker loads in the background, so the next loss is
replaced at once rather than after torch's import.

A worker is never a fork of the auditor: it is forked from a zygote, a fresh interpreter
that imported torch once for every worker of the auditor (:mod:`normcheck.target.zygote`),
or is a fresh interpreter itself. It owns its CUDA context, inherits no threads or locks,
and does not re-run the user's ``__main__``. It starts in the background; the first call
waits for it.
The target travels as its name, or pickled by reference; its output goes to a
log file whose tail a crash report quotes.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from normcheck.errors import UsageError
from normcheck.options import DEFAULTS, AuditOptions
from normcheck.target.loading import load_target
from normcheck.target.protocol import Layout, Run
from normcheck.target.registry import make_candidate
from normcheck.target.torch_bridge import require_torch
from normcheck.target.torch_target import Candidate
from normcheck.target.worker import WORKER_ENV, Worker, crash_site, spawn

#: Seconds a new worker may take to import torch and the target.
START_TIMEOUT = 180.0


class WorkerLost(Exception):
    """The worker process died or stopped answering during a call."""

    def __init__(self, failure: str, error: str, detail: str | None = None) -> None:
        super().__init__(error)
        self.failure, self.error, self.detail = failure, error, detail


class IsolatedCandidate:
    """The auditor's handle on an implementation running in a worker process.

    It answers like :class:`~normcheck.target.torch_target.Candidate` (``describe``, ``run``),
    but a call that kills or stalls the worker is a :class:`Run` with failure
    ``crash`` or ``timeout``, and a fresh worker takes the next call.
    """

    def __init__(self, target: object, name: str, options: AuditOptions = DEFAULTS) -> None:
        if os.environ.get(WORKER_ENV):
            raise UsageError(
                "an audit was started while normcheck's worker process imported the module that defines "
                f"{name}: put the audit under `if __name__ == '__main__':`"
            )
        self.name, self.options, self.device, self.timeout = name, options, options.device, options.timeout
        self.eps_override, self.param_dtype, self.fused = options.eps, options.param_dtype, options.fused
        self.layout, self.scheme = options.layout, options.scheme
        self._framework = options.framework
        self.supports_grad = True
        self.restarts = 0  #: workers started after the first (one per crash or timeout)
        self._payload = payload(target, name)
        self._layouts: dict[tuple[int, str], Layout] = {}
        self._kept: dict[str, str | None] = {}  #: as :meth:`Candidate.keep_parameters` set, for every worker
        self._worker: Worker | None = self._spawn()
        self._spare: Worker | None = None
        self._in_flight = False  #: a request is out and ``meanwhile`` work runs: no other request may start

    @property
    def style(self) -> str:
        """``module``, ``factory`` or ``function``: how the target is called."""
        return self._hello()["style"]

    @property
    def framework(self) -> str:
        """``torch``, ``jax`` or ``numpy``: as named, or as the worker detected it (known after a close)."""
        if self._framework is None:
            self._framework = self._hello()["framework"]
        return self._framework

    @property
    def function_parameters(self) -> tuple[str, ...]:
        """A function target's parameter names (empty for modules)."""
        return self._hello()["function_parameters"]

    # -- the Candidate interface ------------------------------------------------

    def describe(self, n: int, dtype: str) -> Layout:
        """As :meth:`Candidate.describe`; raises :class:`WorkerLost` if building the module kills the worker."""
        key = (n, dtype)
        if key not in self._layouts:
            self._layouts[key] = self._request(("describe", n, dtype))
        return self._layouts[key]

    def keep_parameters(self, dtype: str, param_dtype: str | None) -> None:
        """As :meth:`Candidate.keep_parameters`, in this worker and the ones that replace it."""
        self._kept[dtype] = param_dtype
        self._layouts = {k: v for k, v in self._layouts.items() if k[1] != dtype}
        self._request(("keep_parameters", dtype, param_dtype))

    def run(
        self,
        x: np.ndarray,
        weight: np.ndarray | None,
        bias: np.ndarray | None,
        grad: np.ndarray | None,
        strided: bool = False,
        residual: np.ndarray | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> Run:
        """As :meth:`Candidate.run`; a dead or stalled worker is a ``crash`` or ``timeout`` run.
        ``meanwhile`` runs here while the worker computes (it must not call the worker)."""
        message = ("run", x, weight, bias, grad if self.supports_grad else None, strided, residual)
        run = self._run(message, meanwhile)
        if run.forward_only:
            self.supports_grad = False
        return run

    def repeat(
        self, times: int, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, residual: np.ndarray | None
    ) -> Run:
        """As :meth:`Candidate.repeat`, in one round trip to the worker."""
        return self._run(("repeat", times, x, weight, bias, residual))

    def _run(self, message: tuple, meanwhile: Callable[[], None] | None = None) -> Run:
        """The worker's run for ``message``; a dead or stalled worker is a ``crash`` or ``timeout`` run."""
        try:
            return self._request(message, meanwhile)
        except WorkerLost as lost:
            return Run(failure=lost.failure, error=lost.error, detail=lost.detail)

    def close(self) -> None:
        """Stop the workers (at once: they hold nothing to save, and tearing torch down takes a second)."""
        for worker in (self._worker, self._spare):
            if worker is not None:
                worker.process.kill()
                worker.stop()
        self._worker = self._spare = None

    # -- the workers ---------------------------------------------------------------

    def _spawn(self) -> Worker:
        """Start a worker process for the target; it loads in the background."""
        return spawn(self._payload, self.name, replace(self.options, framework=self._framework))

    def _replace(self, *, hung: bool = False) -> tuple[str, str | None]:
        """Stop the lost worker (see :meth:`Worker.stop`) and put a loaded one in its place.

        After a first loss more are likely (a kernel that crashes on a class of inputs), so from then
        on a spare worker loads in the background: the next loss does not wait for torch to import.
        """
        assert self._worker is not None
        error, detail = self._worker.stop(hung=hung)
        self._worker, self._spare = self._spare or self._spawn(), self._spawn()
        self.restarts += 1
        return error, detail

    def _ready(self) -> Worker:
        """The worker, once it has loaded the target (its greeting tells the target's style)."""
        worker = self._worker
        if worker is None:
            raise RuntimeError(f"the audit of {self.name} is closed")
        if worker.hello is None:
            if not worker.conn.poll(START_TIMEOUT):
                self.close()
                raise UsageError(f"the worker process did not load {self.name} within {START_TIMEOUT:g} s")
            try:
                status, value, *_ = worker.conn.recv()
            except (OSError, EOFError):
                self._worker = None
                error, detail = worker.stop()
                self.close()
                last = (detail or "").strip().splitlines()[-1:] or [""]
                raise UsageError(f"{error} while loading {self.name}: {last[0]}".rstrip(": ")) from None
            if status != "ok":
                self.close()
                raise UsageError(value)
            worker.hello = value
            for dtype, param_dtype in self._kept.items():  # a worker that replaces one keeps its parameter dtypes
                self._request(("keep_parameters", dtype, param_dtype))
        return worker

    def _hello(self) -> dict:
        """The worker's greeting: the target's style, framework and function parameters."""
        hello = self._ready().hello
        assert hello is not None  # (_ready waits for it)
        return hello

    def _request(self, message: tuple, meanwhile: Callable[[], None] | None = None) -> Any:
        """Send ``message`` and return the worker's answer (a Layout, a Run or None: as the message asks);
        ``meanwhile`` runs after sending, and the time it takes counts against the timeout."""
        conn = self._ready().conn
        if self._in_flight:
            raise RuntimeError(f"a request to the worker ({message[0]}) while another one is in flight")
        try:
            conn.send(message)
            sent = time.perf_counter()
            if meanwhile is not None:
                self._in_flight = True
                try:
                    meanwhile()
                except BaseException:
                    self.close()  # the worker's answer is still to come: no later request could be in step
                    raise
                finally:
                    self._in_flight = False
            left = self.timeout - (time.perf_counter() - sent)
            answered = conn.poll(max(0.0, left) if self.timeout > 0 else None)
        except (OSError, EOFError):  # the worker died while reading the message
            answered = True
        if not answered:
            _, detail = self._replace(hung=True)
            where = crash_site(detail)
            raise WorkerLost(
                "timeout",
                f"no result within {self.timeout:g} s{f', stuck in {where}' if where else ''}; the worker was stopped",
                detail,
            )
        try:
            status, value, *restart = conn.recv()
        except (OSError, EOFError):
            error, detail = self._replace()
            raise WorkerLost("crash", error, detail) from None
        if restart:  # the device is broken (a sticky CUDA error): the next call gets a fresh worker
            self._replace()
        if status == "usage":
            raise UsageError(value)
        if status != "ok":
            raise RuntimeError(f"normcheck's worker process failed: {value}")
        return value


def payload(target: object, name: str) -> tuple[str, object]:
    """How the target travels to the worker: its name, a file of the main script, or pickled by reference."""
    if isinstance(target, str):
        return ("spec", target)
    main = sys.modules.get("__main__")
    if getattr(target, "__module__", None) == "__main__" and getattr(main, "__file__", None):
        return ("spec", f"{main.__file__}:{target.__qualname__}")  # type: ignore[attr-defined,union-attr]  # both getattr'd above
    try:
        return ("pickle", pickle.dumps(target))
    except Exception as exc:
        raise UsageError(
            f"{name} cannot be sent to normcheck's worker process ({type(exc).__name__}: {exc}): define it at "
            "module level, or audit in-process (--in-process, in_process=True)"
        ) from None


def open_candidate(target: object, name: str, options: AuditOptions = DEFAULTS) -> Candidate | IsolatedCandidate:
    """The handle the audit runs ``target`` (a spec string or an object) through.

    A worker process by default; ``options.in_process`` runs the implementation in
    this process (for a debugger: a crash or a hang in C then takes the audit down).
    """
    if options.in_process:
        impl = load_target(target) if isinstance(target, str) else target
        return make_candidate(impl, name, options)  # type: ignore[return-value]  # an ArrayCandidate answers as a Candidate does
    candidate = IsolatedCandidate(target, name, options)
    # While the worker starts: import torch (the diagnosis's emulations and the sharp tier's conventions run
    # here), and compile the oracles' and the sharp tier's kernels (a machine's first audit) or load them from
    # numba's cache.
    require_torch()
    # (not at the top: the worker, which imports this module, needs no oracle and no bound)
    from normcheck.verdict.bounds import compile_kernels
    from oracles.warmup import warm_up

    warm_up()
    compile_kernels()
    return candidate

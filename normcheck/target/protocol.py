"""The protocol every framework's candidate answers: what a call produced (:class:`Run`), what the
implementation is at one hidden size and dtype (:class:`Layout`), and how a plain function is called.

A candidate (torch's :class:`~normcheck.target.torch_target.Candidate`, the numpy and JAX ones of
:mod:`normcheck.target.arrays`, or one in a worker process) has ``describe(n, dtype) -> Layout``,
``run(x, weight, bias, grad, strided, residual) -> Run`` and ``repeat(times, x, weight, bias,
residual) -> Run``; whatever the implementation does becomes data in the :class:`Run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from normcheck.target.loading import EPS_NAMES
from normcheck.timing import TimeoutExpired

WEIGHT_NAMES = ("weight", "scale", "gamma", "g", "w")
BIAS_NAMES = ("bias", "beta", "b")
#: Parameter names a fused residual-add function takes its residual by (else it is the second argument).
RESIDUAL_NAMES = ("residual", "res", "residual_in", "skip")
#: Parameter names a quantized norm function takes its given scale by (static, or NVFP4's global; else it is
#: the last argument).
SCALE_NAMES = ("global_scale", "scale")
#: How a call can fail to return a result: the implementation raised, ran past the time limit,
#: or (in a worker process) took the process down.
FAILURES = ("exception", "timeout", "crash")


@dataclass
class Run:
    """What one call of the implementation produced (numpy arrays, input dtype unless wrong)."""

    y: np.ndarray | None = None  #: the output: a quantized norm's quantized values ``q``
    scales: np.ndarray | None = None  #: a dynamic quantized norm's returned scales
    given_scale: float | None = None  #: the scale a static quantized norm was called with, or an NVFP4 global scale
    dx: np.ndarray | None = None
    dw: np.ndarray | None = None
    db: np.ndarray | None = None
    residual_out: np.ndarray | None = None  #: a fused residual-add's x + residual
    dresidual: np.ndarray | None = None  #: the gradient of its residual input
    fused_style: str | None = None  #: how the fused residual-add answered: "return" or "inplace"
    failure: str | None = None  #: one of :data:`FAILURES`, or None when the call returned
    error: str | None = None  #: what the failure was, as "Type: message" or a signal
    detail: str | None = None  #: more of it (the worker's last words, a stack), for the report
    mutated: tuple[str, ...] = ()  #: the inputs the call wrote into ("x", "residual", "grad_output")
    problems: list[str] = field(default_factory=list)  #: wrong shape, dtype, missing gradients
    forward_only: bool = False  #: the output carried no autograd graph
    seconds: float = 0.0  #: time inside the implementation's forward and backward (device synchronized)
    calls: int = 1  #: the calls this run stands for (more than one: a candidate's ``repeat``, seconds summed)
    #: In a worker process: its seconds on the call, from the request to the answer (copies included).
    handled: float | None = None


@dataclass(frozen=True)
class Layout:
    """What the implementation is at one hidden size and dtype: its eps and parameters."""

    eps: float
    has_weight: bool
    has_bias: bool
    parameter_dtype: str  #: the dtype its weight is stored in (the input dtype for functions)
    eps_inferred: bool = False  #: the module states no eps: it was inferred from its outputs


def failed(exc: BaseException, where: str = "", mutated: tuple[str, ...] = ()) -> Run:
    """The run of a call that raised ``exc``: a ``timeout`` for :class:`~normcheck.timing.TimeoutExpired`, else the
    implementation's ``exception`` (``sys.exit()`` in it too); ``where``: the part of the call ("backward")."""
    prefix = f"{where}: " if where else ""
    if isinstance(exc, TimeoutExpired):
        return Run(failure="timeout", error=f"{prefix}{exc}", mutated=mutated)
    return Run(failure="exception", error=f"{prefix}{type(exc).__name__}: {exc}".strip(), mutated=mutated)


def repeated(call: Callable[[], Run], times: int) -> Run:
    """``call()`` ``times`` times (at least once), standing for all of them: the first run that failed, else the
    last; its :attr:`Run.calls` the calls made and its :attr:`Run.seconds` their time."""
    seconds, calls = 0.0, 0
    while True:
        run = call()
        seconds, calls = seconds + run.seconds, calls + 1
        if run.failure is not None or calls >= times:
            return replace(run, calls=calls, seconds=seconds)


def output_problems(
    shape: tuple[int, ...],
    dtype: str,
    x: np.ndarray,
    name: str = "output",
    expected: tuple[tuple[int, ...], str, str] | None = None,
) -> list[str]:
    """What is wrong with an output (``name``) of ``shape`` and ``dtype`` (its name) for the input ``x``: it
    should have the input's shape and dtype, or ``expected`` (shape, dtype, and what they are: "the scheme's")."""
    want_shape, want_dtype, what = expected or (tuple(x.shape), str(x.dtype), "the input")
    problems = []
    if shape != want_shape:
        problems.append(f"{name} shape {shape} differs from {what} shape {want_shape}")
    if dtype != want_dtype:
        problems.append(f"{name} dtype {dtype} differs from {what} dtype {want_dtype}")
    return problems


def scale_parameter(parameters: tuple[str, ...]) -> str | None:
    """The parameter of a function that takes a quantized norm's given scale by name, or None (then it takes
    it as its argument after the input)."""
    return next((k for k in SCALE_NAMES if k in parameters), None)


def function_arguments(
    parameters: tuple[str, ...], n: int, weight: object | None, bias: object | None, eps: float | None
) -> dict[str, object]:
    """The keyword arguments a plain function is called with, by the names it takes.

    ``normalized_shape`` gets ``(n,)``; ``weight`` and ``bias`` their tensors; the
    first eps-like name gets ``eps`` when one is stated (else the function's default holds).
    """
    kwargs: dict[str, object] = {}
    if "normalized_shape" in parameters:
        kwargs["normalized_shape"] = (n,)
    if "weight" in parameters and weight is not None:
        kwargs["weight"] = weight
    if "bias" in parameters and bias is not None:
        kwargs["bias"] = bias
    eps_name = next((k for k in EPS_NAMES if k in parameters), None)
    if eps is not None and eps_name is not None:
        kwargs[eps_name] = eps
    return kwargs

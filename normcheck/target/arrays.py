"""What the numpy and JAX candidates share: the run protocol of :class:`normcheck.target.torch_target.Candidate`
over an array framework, whose subclasses say only how to build the implementation and call it.

As for torch, whatever the implementation does (raise, hang in Python, return a
list or the wrong dtype, write into its input) is data in a :class:`Run`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from normcheck.errors import UsageError
from normcheck.options import DEFAULTS, AuditOptions, InputLayout
from normcheck.quantization import given_scale
from normcheck.target.eps import function_eps, function_signature
from normcheck.target.protocol import (
    Layout,
    Run,
    failed,
    function_arguments,
    output_problems,
    repeated,
    scale_parameter,
)
from normcheck.target.quantized_outputs import read_quantized
from normcheck.timing import interrupt_after

#: (y, pullback): pullback() returns the gradients {"x": dx, "weight": dw, "bias": db} (any may be None).
Forward = tuple[object, Callable[[], dict[str, object]] | None]


@dataclass
class Built:
    """The implementation at one hidden size and dtype: how to call it and what it is."""

    #: (x, {"weight": w, "bias": b} for the parameters it has, grad_output or None) -> Forward
    call: Callable[[object, dict[str, object], np.ndarray | None], Forward]
    layout: Layout


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays hold the same bits (NaN payloads and signed zeros included)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    unsigned = np.dtype(f"u{a.dtype.itemsize}")
    return bool(np.array_equal(np.ascontiguousarray(a).view(unsigned), np.ascontiguousarray(b).view(unsigned)))


class ArrayCandidate:
    """An implementation on arrays of a framework other than torch, run in this process."""

    framework = ""
    #: What the implementation must return ("numpy array", "jax.Array").
    array_name = ""

    def __init__(self, target: object, name: str, options: AuditOptions = DEFAULTS) -> None:
        if options.residual:
            raise UsageError(f"--residual audits torch targets; {name} is a {self.framework} one")
        if options.layout != InputLayout.LAST:
            raise UsageError(f"--layout {options.layout} audits torch targets; {name} is a {self.framework} one")
        self.scheme = options.scheme  #: a quantized norm's output scheme (forward only), or None
        self.fused = None  #: fused residual-adds are audited in torch only
        self.layout = InputLayout.LAST
        self.target, self.name, self.device, self.timeout = target, name, options.device, options.timeout
        self.eps_override, self.param_dtype, self.compile = options.eps, options.param_dtype, options.compile
        self.supports_grad = True
        self.style = "function"
        #: A function's parameter names (empty for modules): how it is called.
        self.function_parameters: tuple[str, ...] = ()
        self._built: dict[tuple[int, str], Built] = {}

    def _function(self) -> None:
        """Take the target as a plain function of its input array."""
        self._fn_params = function_signature(self.target, self.name, self.eps_override)
        self.function_parameters = tuple(self._fn_params)

    def _call_function(self, n: int, x: object, params: dict[str, object], **extra: object) -> object:
        """The function target on ``x``, with the weight, bias, eps and a quantized norm's given scale of
        ``params`` by the names it takes (the scale after ``x`` where it takes no such name), and ``extra``."""
        kwargs = function_arguments(
            self.function_parameters, n, params.get("weight"), params.get("bias"), self.eps_override
        )
        scale, name = params.get("scale"), scale_parameter(self.function_parameters)
        args: tuple[object, ...] = ()
        if scale is not None and name is not None:
            kwargs[name] = scale
        elif scale is not None:
            args = (scale,)
        return self.target(x, *args, **kwargs, **extra)  # type: ignore[operator]  # a function target: callable

    def _function_layout(self, dtype: str) -> Layout:
        """A plain function's layout: weight and bias where it takes them, in the parameter dtype."""
        has_w, has_b = "weight" in self._fn_params, "bias" in self._fn_params
        eps = function_eps(self._fn_params, dtype, self.eps_override)
        return Layout(eps, has_w, has_b, self.param_dtype or dtype)

    # -- what a framework provides ------------------------------------------------

    def _build(self, n: int, dtype: str) -> Built:
        raise NotImplementedError

    def _array(self, a: np.ndarray) -> object:
        """The framework's array with ``a``'s values and dtype, in memory of its own."""
        raise NotImplementedError

    def _is_array(self, y: object) -> bool:
        raise NotImplementedError

    def _host(self, a: object) -> np.ndarray:
        """A numpy copy of one of the framework's arrays (bfloat16 as ``ml_dtypes.bfloat16``)."""
        return np.array(a, copy=True)

    def _host_named(self, a: object) -> tuple[np.ndarray, str] | None:
        """:meth:`_host` and the dtype's name of one of the framework's arrays, or None for anything else."""
        return (self._host(a), str(a.dtype)) if self._is_array(a) else None  # type: ignore[attr-defined]  # an array

    def _ready(self, tree: object) -> None:
        """Wait until the results in ``tree`` are computed (asynchronous frameworks)."""

    @contextmanager
    def _precision(self, dtype: str) -> Iterator[None]:
        """The settings computations in ``dtype`` need (JAX: 64-bit mode for float64)."""
        yield

    # -- the Candidate interface ------------------------------------------------

    def built(self, n: int, dtype: str) -> Built:
        """The implementation for hidden size ``n`` in ``dtype`` (cached)."""
        key = (n, dtype)
        if key not in self._built:
            with self._precision(dtype):
                self._built[key] = self._build(n, dtype)
        return self._built[key]

    def describe(self, n: int, dtype: str) -> Layout:
        """As :meth:`Candidate.describe`."""
        return self.built(n, dtype).layout

    def run(
        self,
        x: np.ndarray,
        weight: np.ndarray | None,
        bias: np.ndarray | None,
        grad: np.ndarray | None,
        strided: bool = False,
        residual: np.ndarray | None = None,
    ) -> Run:
        """As :meth:`Candidate.run` (without a residual: never one here, see ``fused``): call the
        implementation on copies; never raises for its faults."""
        dtype, n = str(x.dtype), x.shape[-1]
        built = self.built(n, dtype)
        want = grad is not None and self.supports_grad and self.scheme is None
        out = Run()
        scale = None if self.scheme is None else given_scale(x, weight, built.layout.eps, self.scheme)
        out.given_scale = None if scale is None else float(scale)
        with self._precision(dtype):
            # A strided input is a transposed view (numpy; a JAX array has no strides).
            xs = self._array(np.ascontiguousarray(x.T).T if strided else x)
            given = (("weight", weight), ("bias", bias), ("scale", None if scale is None else np.asarray(scale)))
            params = {k: self._array(v) for k, v in given if v is not None}
            g = None if not want else np.array(grad, dtype=x.dtype, copy=True).reshape(x.shape)
            try:
                start = time.perf_counter()
                with interrupt_after(self.timeout), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the implementation's warnings are not normcheck's
                    y, pullback = built.call(xs, params, g)
                    self._ready(y)
                out.seconds = time.perf_counter() - start
            except UsageError:
                raise
            except (Exception, SystemExit) as exc:  # a timeout, or the implementation's exception
                return failed(exc)
            out.mutated = self._mutated(x, xs)
            if self.scheme is not None:
                return read_quantized(out, y, self.scheme, x, self._host_named, self.array_name)
            if not self._is_array(y):
                out.problems.append(f"returned {type(y).__name__}, not a {self.array_name}")
                return out
            out.problems += output_problems(tuple(y.shape), str(y.dtype), x)  # type: ignore[attr-defined]  # an array
            out.y = self._host(y)
            if grad is not None and pullback is None:
                self.supports_grad = False  # no gradients: audited forward-only
                out.forward_only = True
            if not want or pullback is None:
                return out
            try:
                start = time.perf_counter()
                with interrupt_after(self.timeout), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    grads = pullback()
                    self._ready(grads)
                out.seconds += time.perf_counter() - start
            except (Exception, SystemExit) as exc:
                return failed(exc, "backward", out.mutated)
        if not same_bits(np.asarray(grad, dtype=x.dtype).reshape(x.shape), g):  # type: ignore[arg-type]  # g: an array, as want
            out.mutated += ("grad_output",)
        for key, name in (("x", "dx"), ("weight", "dw"), ("bias", "db")):
            value = grads.get(key)
            if value is not None and not self._is_array(value):
                out.problems.append(f"{name} is a {type(value).__name__}, not a {self.array_name}")
            elif value is not None:
                setattr(out, name, self._host(value))
        if grads.get("x") is None:
            out.problems.append("backward produced no gradient for the input")
        return out

    def repeat(
        self, times: int, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, residual: np.ndarray | None
    ) -> Run:
        """Call the implementation forward ``times`` times on ``x`` (:func:`~normcheck.target.protocol.repeated`)."""
        return repeated(lambda: self.run(x, weight, bias, None, residual=residual), times)

    def _mutated(self, x: np.ndarray, given: object) -> tuple[str, ...]:
        """``("x",)`` if the implementation wrote into (or, JAX, deleted by donation) the input it was given."""
        try:
            after = self._host(given)
        except Exception:  # a deleted (donated) buffer cannot be read back
            return ("x",)
        return () if same_bits(x, after.reshape(x.shape)) else ("x",)

    def device_is_healthy(self) -> bool:
        """Whether the device still computes (always, on the CPU these frameworks run on here)."""
        return True

    def close(self) -> None:
        """Nothing to release in this process (a worker process has)."""

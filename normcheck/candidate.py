"""A uniform handle on an implementation under audit: set its parameters, run it, read results back.

Whatever the implementation does (raise, return the wrong shape, mutate its
input, hang) becomes data in a :class:`Run`; only usage errors raise.
"""

from __future__ import annotations

import inspect
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from normcheck.errors import UsageError
from normcheck.loading import EPS_NAMES, construct_module, input_parameter, is_module_class
from normcheck.torch_bridge import from_numpy, require_torch, to_numpy

WEIGHT_NAMES = ("weight", "scale", "gamma", "g", "w")
BIAS_NAMES = ("bias", "beta", "b")


@dataclass
class Run:
    """What one call of the implementation produced (numpy arrays, input dtype unless wrong)."""

    y: np.ndarray | None = None
    dx: np.ndarray | None = None
    dw: np.ndarray | None = None
    db: np.ndarray | None = None
    error: str | None = None  #: exception or timeout, as "Type: message"
    mutated: bool = False  #: the input tensor changed during the call
    problems: list[str] = field(default_factory=list)  #: wrong shape, dtype, missing gradients


class TimeoutExpired(Exception):
    """The implementation did not return in time."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`TimeoutExpired` in the main thread after ``seconds`` (no-op elsewhere)."""
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


def torch_default_eps(dtype_name: str) -> float:
    """The eps torch uses when an RMSNorm's eps is None: finfo of the opmath dtype."""
    return 2.0**-52 if dtype_name == "float64" else 2.0**-23


class Candidate:
    """An implementation under audit, built once per hidden size and dtype.

    ``target`` is a module class, a factory returning a module, or a plain
    function of a tensor. ``eps`` overrides the implementation's own.
    """

    def __init__(
        self, target: object, name: str, *, device: str = "cpu", eps: float | None = None, timeout: float = 20.0
    ) -> None:
        self.torch = require_torch()
        self.target, self.name, self.device, self.timeout = target, name, device, timeout
        self.eps_override = eps
        self._modules: dict[tuple[int, str], object] = {}
        if is_module_class(target):
            self.style = "module"
        elif input_parameter(target) is not None or not callable(target):
            self.style = "function"
        else:
            self.style = "factory"
        if self.style == "function":
            self._fn_params = inspect.signature(target).parameters  # type: ignore[arg-type]
            if eps is None and not any(n in self._fn_params for n in EPS_NAMES):
                raise UsageError(f"{name} takes no eps argument: pass the eps it uses with --eps")
        self.supports_grad = True

    # -- construction ---------------------------------------------------------

    def module(self, n: int, dtype: str) -> object:
        """The module for hidden size ``n`` in ``dtype`` on the device (cached)."""
        key = (n, dtype)
        if key not in self._modules:
            mod = construct_module(self.target, n, self.eps_override)
            if not isinstance(mod, self.torch.nn.Module):
                raise UsageError(f"{self.name}({n}) returned a {type(mod).__name__}, not a torch.nn.Module")
            self._modules[key] = mod.to(device=self.device, dtype=getattr(self.torch, dtype))
        return self._modules[key]

    def parameters(self, n: int, dtype: str) -> tuple[object | None, object | None]:
        """The (weight, bias) tensors the implementation scales and shifts with, or None."""
        if self.style == "function":
            return None, None
        named = dict(self.module(n, dtype).named_parameters())  # type: ignore[attr-defined]
        vectors = {k: p for k, p in named.items() if p.dim() == 1 and p.shape[0] == n}
        weight = next((vectors[k] for k in WEIGHT_NAMES if k in vectors), None)
        bias = next((vectors[k] for k in BIAS_NAMES if k in vectors), None)
        return weight, bias

    def has_parameters(self, n: int, dtype: str) -> tuple[bool, bool]:
        if self.style == "function":
            return "weight" in self._fn_params, "bias" in self._fn_params
        w, b = self.parameters(n, dtype)
        return w is not None, b is not None

    def parameter_dtype(self, n: int, dtype: str) -> str:
        """The dtype the weight is stored in (the input dtype for functions)."""
        w, _ = self.parameters(n, dtype)
        return dtype if w is None else str(w.dtype).replace("torch.", "")  # type: ignore[attr-defined]

    def eps(self, n: int, dtype: str) -> float:
        """The eps the implementation uses on ``dtype`` inputs."""
        if self.eps_override is not None:
            return float(self.eps_override)
        if self.style == "function":
            name = next(n for n in EPS_NAMES if n in self._fn_params)
            default = self._fn_params[name].default
            return torch_default_eps(dtype) if default in (None, inspect.Parameter.empty) else float(default)
        mod = self.module(n, dtype)
        for attr in EPS_NAMES:
            if hasattr(mod, attr):
                value = getattr(mod, attr)
                return torch_default_eps(dtype) if value is None else float(value)
        raise UsageError(f"cannot find the eps of {self.name} (no attribute {', '.join(EPS_NAMES)}): pass --eps")

    # -- running --------------------------------------------------------------

    def run(
        self,
        x: np.ndarray,
        weight: np.ndarray | None,
        bias: np.ndarray | None,
        grad: np.ndarray | None,
        *,
        strided: bool = False,
    ) -> Run:
        """Call the implementation on ``x`` (and backward with ``grad``); never raises for its faults.

        ``strided`` hands over a non-contiguous (transposed) view of a 2-d ``x``.
        """
        torch, out = self.torch, Run()
        dtype = str(x.dtype)
        n = x.shape[-1]
        try:
            # The leaf tensor owns the gradient; a strided input is a transposed view of it.
            leaf = from_numpy(np.ascontiguousarray(x.T) if strided else x, self.device)
            before = leaf.detach().clone()
            leaf.requires_grad_(grad is not None and self.supports_grad)
            xt = leaf.t() if strided else leaf
            # The implementation's own warnings are not normcheck's (and must not become errors under -W error).
            with _time_limit(self.timeout), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, params = self._call(xt, weight, bias, n, dtype)
                self._synchronize()
        except UsageError:
            raise
        except (Exception, TimeoutExpired) as exc:
            out.error = f"{type(exc).__name__}: {exc}".strip()
            return out
        out.mutated = not _same_bits(before, leaf.detach())
        if not isinstance(y, torch.Tensor):
            out.problems.append(f"returned {type(y).__name__}, not a tensor")
            return out
        if tuple(y.shape) != tuple(x.shape):
            out.problems.append(f"output shape {tuple(y.shape)} differs from the input shape {tuple(x.shape)}")
        if y.dtype != xt.dtype:
            out.problems.append(
                f"output dtype {str(y.dtype).replace('torch.', '')} differs from the input dtype {dtype}"
            )
        out.y = to_numpy(y)
        if grad is None or not self.supports_grad:
            return out
        if not y.requires_grad:
            self.supports_grad = False  # no autograd support: audited forward-only
            return out
        try:
            with _time_limit(self.timeout), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y.backward(from_numpy(grad.astype(x.dtype), self.device).to(y.dtype).reshape(y.shape))
                self._synchronize()
        except (Exception, TimeoutExpired) as exc:
            out.error = f"backward: {type(exc).__name__}: {exc}".strip()
            return out
        out.dx = None if leaf.grad is None else to_numpy(leaf.grad.t() if strided else leaf.grad)
        w_t, b_t = params
        out.dw = None if w_t is None or w_t.grad is None else to_numpy(w_t.grad)
        out.db = None if b_t is None or b_t.grad is None else to_numpy(b_t.grad)
        if out.dx is None:
            out.problems.append("backward produced no gradient for the input")
        return out

    def _call(self, xt: object, weight: np.ndarray | None, bias: np.ndarray | None, n: int, dtype: str):
        torch = self.torch
        if self.style == "function":
            kwargs: dict[str, object] = {}
            names = self._fn_params
            w_t = b_t = None
            if "normalized_shape" in names:
                kwargs["normalized_shape"] = (n,)
            if "weight" in names and weight is not None:
                w_t = from_numpy(weight, self.device).requires_grad_(xt.requires_grad)  # type: ignore[attr-defined]
                kwargs["weight"] = w_t
            if "bias" in names and bias is not None:
                b_t = from_numpy(bias, self.device).requires_grad_(xt.requires_grad)  # type: ignore[attr-defined]
                kwargs["bias"] = b_t
            if self.eps_override is not None:
                kwargs[next(k for k in EPS_NAMES if k in names)] = self.eps_override
            return self.target(xt, **kwargs), (w_t, b_t)  # type: ignore[operator]
        mod = self.module(n, dtype)
        w_t, b_t = self.parameters(n, dtype)
        with torch.no_grad():
            for p, v in ((w_t, weight), (b_t, bias)):
                if p is not None and v is not None:
                    p.copy_(from_numpy(v, self.device))  # type: ignore[attr-defined]
                if p is not None:
                    p.grad = None  # type: ignore[attr-defined]
        return mod(xt), (w_t, b_t)  # type: ignore[operator]

    def _synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()


def _same_bits(a: object, b: object) -> bool:
    torch = require_torch()
    if a.shape != b.shape or a.dtype != b.dtype:  # type: ignore[attr-defined]
        return False
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]  # type: ignore[attr-defined]
    return bool(torch.equal(a.view(ints), b.view(ints)))  # type: ignore[attr-defined]

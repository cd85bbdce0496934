"""A uniform handle on an implementation under audit: set its parameters, run it, read results back.

Whatever the implementation does (raise, return the wrong shape, mutate its
input, hang in Python) becomes data in a :class:`Run`; only usage errors raise.
This handle runs the implementation in the calling process; ``normcheck.target.isolation``
runs the same handle in a worker process, out of the auditor's reach.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from types import ModuleType

import numpy as np

from normcheck.errors import UsageError
from normcheck.options import DEFAULTS, AuditOptions, Style
from normcheck.quantization import given_scale
from normcheck.target.eps import EpsNotFound, function_eps, function_signature, inferred_eps, module_eps
from normcheck.target.layouts import from_layout, to_layout
from normcheck.target.loading import construct_module, input_parameter, is_module_class
from normcheck.target.protocol import (
    BIAS_NAMES,
    RESIDUAL_NAMES,
    WEIGHT_NAMES,
    Layout,
    Run,
    failed,
    function_arguments,
    scale_parameter,
)
from normcheck.target.torch_bridge import (
    Module,
    Tensor,
    from_numpy,
    require_device,
    require_dtype,
    require_torch,
    synchronize,
    to_numpy,
)
from normcheck.target.torch_outputs import read_backward, read_forward, same_bits
from normcheck.timing import interrupt_after


class Modules:
    """A module or factory target's modules, built once per hidden size and dtype on the device, and the dtype
    parameters are kept in for each input dtype: as stated (``param_dtype``), as :meth:`keep` set, or the input
    dtype (a function's parameters follow the same rule)."""

    def __init__(self, target: object, name: str, options: AuditOptions) -> None:
        self.torch = require_torch()
        self.target, self.name, self.device = target, name, options.device
        self.eps, self.param_dtype = options.eps, options.param_dtype
        self._built: dict[tuple[int, str], Module] = {}
        self._kept: dict[str, str | None] = {}  #: input dtype -> the dtype its parameters are kept in instead

    def parameter_dtype(self, dtype: str) -> str:
        """The dtype the parameters for ``dtype`` inputs are kept in."""
        return self.param_dtype or self._kept.get(dtype) or dtype

    def keep(self, dtype: str, param_dtype: str | None) -> None:
        """From now on keep the parameters for ``dtype`` inputs in ``param_dtype`` (None: in ``dtype``)."""
        self._kept[dtype] = param_dtype
        self._built = {k: v for k, v in self._built.items() if k[1] != dtype}

    def get(self, n: int, dtype: str) -> Module:
        """The module for hidden size ``n`` in ``dtype`` on the device (built on first use)."""
        key = (n, dtype)
        if key not in self._built:
            mod = construct_module(self.target, n, self.eps)
            if not isinstance(mod, self.torch.nn.Module):
                raise UsageError(f"{self.name}({n}) returned a {type(mod).__name__}, not a torch.nn.Module")
            self._built[key] = mod.to(device=self.device, dtype=getattr(self.torch, self.parameter_dtype(dtype)))
        return self._built[key]

    def parameters(self, n: int, dtype: str) -> tuple[Tensor | None, Tensor | None]:
        """The module's (weight, bias): its vectors of length ``n`` by their names, or None."""
        named = dict(self.get(n, dtype).named_parameters())
        vectors = {k: p for k, p in named.items() if p.dim() == 1 and p.shape[0] == n}
        weight = next((vectors[k] for k in WEIGHT_NAMES if k in vectors), None)
        bias = next((vectors[k] for k in BIAS_NAMES if k in vectors), None)
        return weight, bias


class Candidate:
    """An implementation under audit, built once per hidden size and dtype, run in this process.

    ``target`` is a module class, a factory returning a module, or a plain
    function of a tensor. The options it reads (:class:`~normcheck.options.AuditOptions`):
    ``eps``, when given, is the eps the implementation uses: it is passed to a constructor or
    function that takes one, and trusted as stated where the implementation hard-codes its eps;
    ``timeout`` (seconds, 0 for none) interrupts Python-level hangs; ``compile`` names a
    ``torch.compile`` backend ("inductor", "aot_eager", ...) to audit the compiled implementation
    with; ``residual`` audits a fused residual-add + norm, called as ``f(x, residual, ...)`` or
    ``module(x, residual)``; ``layout`` hands it channels-first tensors (:mod:`~normcheck.target.layouts`);
    ``param_dtype`` is the dtype its parameters are kept in (default: the
    input dtype, or what :meth:`keep_parameters` set for it).
    """

    framework = "torch"

    def __init__(self, target: object, name: str, options: AuditOptions = DEFAULTS) -> None:
        self.torch = require_torch()
        require_device(options.device)
        self.target, self.name, self.device, self.timeout = target, name, options.device, options.timeout
        if options.compile is not None:
            _allow_recompiles(self.torch)
        self.eps_override, self.param_dtype = options.eps, options.param_dtype
        self.fused, self.layout = options.fused, options.layout
        self.scheme = options.scheme
        #: The fused residual-add's style: as forced, or found on the first call (None until then under auto).
        self.fused_style = None if self.fused in (None, Style.AUTO) else self.fused
        self.modules = Modules(target, name, options)
        self._layouts: dict[tuple[int, str], Layout] = {}
        if is_module_class(target):
            self.style = "module"
        elif input_parameter(target) is not None or not callable(target):
            self.style = "function"
        else:
            self.style = "factory"
        #: A function's parameter names (empty for modules): how it is called, here and in reproducers.
        self.function_parameters: tuple[str, ...] = ()
        if self.style == "function":
            self._fn_params = function_signature(target, name, options.eps)
            self.function_parameters = tuple(self._fn_params)
        # Compiled as user code calls it: torch.compile skips a torch.nn module's own forward when that
        # is the frame it is given, but traces it inlined from a caller's frame.
        compiled = options.compile
        self._invoke = _invoke if compiled is None else self.torch.compile(_invoke, backend=compiled)
        self.supports_grad = True

    def keep_parameters(self, dtype: str, param_dtype: str | None) -> None:
        """From now on keep the parameters for ``dtype`` inputs in ``param_dtype`` (None: in ``dtype``)."""
        self.modules.keep(dtype, param_dtype)
        self._layouts = {k: v for k, v in self._layouts.items() if k[1] != dtype}

    def parameters(self, n: int, dtype: str) -> tuple[Tensor | None, Tensor | None]:
        """The (weight, bias) tensors the implementation scales and shifts with, or None."""
        return (None, None) if self.style == "function" else self.modules.parameters(n, dtype)

    def describe(self, n: int, dtype: str) -> Layout:
        """The eps, parameters and parameter dtype of the implementation at ``n`` in ``dtype`` (cached)."""
        key = (n, dtype)
        if key not in self._layouts:
            require_dtype(self.device, dtype)
            if self.style == "function":
                has_w, has_b = "weight" in self._fn_params, "bias" in self._fn_params
                pdtype = self.modules.parameter_dtype(dtype)
            else:
                w, b = self.parameters(n, dtype)
                has_w, has_b = w is not None, b is not None
                pdtype = dtype if w is None else str(w.dtype).replace("torch.", "")
            eps, inferred = self._eps(n, dtype)
            self._layouts[key] = Layout(eps, has_w, has_b, pdtype, inferred)
        return self._layouts[key]

    def _eps(self, n: int, dtype: str) -> tuple[float, bool]:
        """The eps at ``n`` in ``dtype``, and whether it was inferred from the module's outputs."""
        if self.style == "function":
            return function_eps(self._fn_params, dtype, self.eps_override), False
        try:
            return module_eps(self.modules.get(n, dtype), self.name, dtype, self.eps_override), False
        except EpsNotFound as exc:
            eps, estimate = inferred_eps(self._unit_call)
            if eps is None:
                raise UsageError(f"{exc} (its outputs suggest {estimate:.4g}, none of the usual values)") from None
            return eps, True

    def _unit_call(self, x: np.ndarray) -> np.ndarray:
        """The module's float32 output on ``x`` with unit weight and zero bias (the eps probe)."""
        n = x.shape[-1]
        w, b = self.parameters(n, "float32")
        ones = None if w is None else np.ones(n, str(w.dtype).replace("torch.", ""))
        zeros = None if b is None else np.zeros(n, str(b.dtype).replace("torch.", ""))
        with self.torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, _params = self._call(from_numpy(x, self.device), ones, zeros, n, "float32")
        return to_numpy(y.float())

    # -- running --------------------------------------------------------------

    def run(
        self,
        x: np.ndarray,
        weight: np.ndarray | None,
        bias: np.ndarray | None,
        grad: np.ndarray | None,
        strided: bool = False,
        residual: np.ndarray | None = None,
    ) -> Run:
        """Call the implementation on ``x`` (and backward with ``grad``); never raises for its faults.

        The implementation gets tensors of its own (copies): what it writes into
        them is reported in :attr:`Run.mutated`. ``strided`` hands over a
        non-contiguous (transposed) view of a 2-d ``x``. ``residual`` is a fused
        residual-add's second input; gradients flow only where it returns its results.
        """
        if self.fused and residual is None:
            raise UsageError(f"{self.name} is audited as a fused residual-add: every call needs a residual")
        if self.fused and self.fused_style is None:  # auto: a first call without gradients tells the style
            probe = self._run(x, weight, bias, None, strided, residual)
            if self.fused_style != Style.RETURN or grad is None:  # in place, the probe is the forward-only answer
                return probe
        if self.fused_style == Style.INPLACE:
            grad = None  # autograd refuses in-place writes into inputs that need gradients
        return self._run(x, weight, bias, grad, strided, residual)

    def repeat(
        self, times: int, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, residual: np.ndarray | None
    ) -> Run:
        """Call the implementation forward ``times`` times on copies of ``x`` (and ``residual``), for what calls do
        to its state. The first call is checked as :meth:`run` checks one and stands for all (:attr:`Run.calls`,
        :attr:`Run.seconds` the total); the others, on tensors prepared once, only have to return."""
        first = self.run(x, weight, bias, None, residual=residual)
        if first.failure is not None or times <= 1:
            return first
        n, dtype = x.shape[-1], str(x.dtype)
        given = [from_numpy(a, self.device) for a in (x, residual) if a is not None]
        scale = self._given_scale(x, weight)
        if self.style != "function":  # a module's parameters hold the weight and bias already
            weight = bias = None
        start = time.perf_counter()
        try:
            with interrupt_after(self.timeout), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(times - 1):
                    xt, *rest = (t.clone() for t in given)
                    self._call(xt, weight, bias, n, dtype, *rest, scale=scale)
                synchronize(self.device)
        except UsageError:
            raise
        except (Exception, SystemExit) as exc:  # a timeout, or the implementation's exception
            return failed(exc, "called again")
        return replace(first, calls=times, seconds=first.seconds + time.perf_counter() - start)

    def _run(
        self,
        x: np.ndarray,
        weight: np.ndarray | None,
        bias: np.ndarray | None,
        grad: np.ndarray | None,
        strided: bool,
        residual: np.ndarray | None,
    ) -> Run:
        out = Run()
        dtype = str(x.dtype)
        n = x.shape[-1]
        try:
            # A leaf tensor owns each gradient; a strided input is a transposed view of it.
            leaves = [
                from_numpy(np.ascontiguousarray(a.T) if strided else a, self.device)
                for a in (x, residual)
                if a is not None
            ]
            before = [leaf.detach().clone() for leaf in leaves]
            for leaf in leaves:
                leaf.requires_grad_(grad is not None and self.supports_grad)
            xt, *rest = [leaf.t() if strided else leaf for leaf in leaves]
            out.given_scale = scale = self._given_scale(x, weight)
            # The implementation's own warnings are not normcheck's (and must not become errors under -W error).
            start = time.perf_counter()
            with interrupt_after(self.timeout), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result, params = self._call(xt, weight, bias, n, dtype, *rest, scale=scale)
                synchronize(self.device)
            out.seconds = time.perf_counter() - start
        except UsageError:
            raise
        except (Exception, SystemExit) as exc:  # a timeout, or the implementation's exception
            return failed(exc)
        written = tuple(
            name for name, leaf, old in zip(("x", "residual"), leaves, before) if not same_bits(old, leaf.detach())
        )
        y, self.fused_style = read_forward(
            out, result, x, xt, rest, written, self.fused_style, self.scheme, self.fused is not None
        )
        if y is None or grad is None or not self.supports_grad:
            return out
        if not y.requires_grad:
            self.supports_grad = False  # no autograd support: audited forward-only
            out.forward_only = True
            return out
        return read_backward(out, y, grad.astype(x.dtype), leaves, params, strided, self.timeout, self.device)

    def _given_scale(self, x: np.ndarray, weight: np.ndarray | None) -> float | None:
        """The scale a quantized norm is called with on ``x``, static or NVFP4's global (None for any other)."""
        if self.scheme is None or not self.scheme.given:
            return None
        scale = given_scale(x, weight, self.describe(x.shape[-1], str(x.dtype)).eps, self.scheme)
        return None if scale is None else float(scale)

    def _call(
        self,
        xt: Tensor,
        weight: np.ndarray | None,
        bias: np.ndarray | None,
        n: int,
        dtype: str,
        *rest: object,
        scale: float | None = None,
    ):
        """The implementation on ``xt`` (and a fused residual-add's residual in ``rest``; a static quantized norm
        gets ``scale`` as a float32 0-d tensor, an NVFP4 norm its global scale: by a parameter named
        ``global_scale`` or ``scale``, else as its last argument)."""
        torch = self.torch
        if scale is not None:
            rest = (*rest, torch.tensor(scale, dtype=torch.float32, device=self.device))
        if self.style == "function":
            need = xt.requires_grad
            w_t = None if weight is None else from_numpy(weight, self.device).requires_grad_(need)
            b_t = None if bias is None else from_numpy(bias, self.device).requires_grad_(need)
            kwargs = function_arguments(self.function_parameters, n, w_t, b_t, self.eps_override)
            name = scale_parameter(self.function_parameters)
            if scale is not None and name is not None:
                kwargs[name], rest = rest[-1], rest[:-1]
            name = next((k for k in RESIDUAL_NAMES if k in self.function_parameters), None)
            if rest and name is not None:
                kwargs[name], rest = rest[0], ()
            result = self._invoke(self.target, to_layout(xt, self.layout), rest, kwargs)
            return from_layout(result, tuple(xt.shape), self.layout), (kwargs.get("weight"), kwargs.get("bias"))
        mod = self.modules.get(n, dtype)
        w_t, b_t = self.parameters(n, dtype)
        with torch.no_grad():
            for p, v in ((w_t, weight), (b_t, bias)):
                if p is not None and v is not None:
                    p.copy_(from_numpy(v, self.device))
                if p is not None:
                    p.grad = None
        result = self._invoke(mod, to_layout(xt, self.layout), rest, {})
        return from_layout(result, tuple(xt.shape), self.layout), (w_t, b_t)

    def device_is_healthy(self) -> bool:
        """Whether the device still computes (a CUDA error such as an illegal address is sticky)."""
        if self.device == "cpu":
            return True
        try:
            (self.torch.ones(2, device=self.device) * 2).sum().item()
            return True
        except Exception:
            return False

    def close(self) -> None:
        """Nothing to release in this process (a worker process has)."""


def _invoke(implementation: object, x: object, args: tuple, kwargs: dict[str, object]) -> object:
    """Call a module or function on ``x``: the frame torch.compile compiles under ``--compile``."""
    return implementation(x, *args, **kwargs)  # type: ignore[operator]  # a module or function, as the user gave it


def _allow_recompiles(torch: ModuleType) -> None:
    """Let torch.compile recompile for every shape and dtype the audit tries, and never fall back
    to eager code silently (past its recompile limit it would run, and so audit, the eager module)."""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, 1 << 16)
    if hasattr(config, "fail_on_recompile_limit_hit"):
        config.fail_on_recompile_limit_hit = True

"""JAX functions and Flax modules (``--framework jax``, detected for Flax classes and jax functions).

- A **function** of a ``jax.Array`` is called as ``fn(x, weight=w, bias=b, eps=e)``
  (only the names it takes), as a torch function is.
- A **Flax nnx module class** (``flax.nnx.RMSNorm``) or a factory returning an nnx
  module is built as ``Cls(n, epsilon=..., param_dtype=..., rngs=nnx.Rngs(0))``
  (each where the constructor takes it); a **Flax linen module class** as
  ``Cls(epsilon=..., param_dtype=...)`` and initialized on a row of zeros. Their
  1-d parameters of the hidden size named like a weight (``scale``, ``weight``, ...)
  or a bias get the audit's values.
- ``param_dtype`` is the audited dtype unless ``--param-dtype`` says otherwise (Flax's own
  default is float32); ``dtype`` is left to Flax (None: computed from the input and the
  parameters, so float32 parameters promote a half-precision input's output to float32).
- Gradients of ``x`` and the parameters through ``jax.vjp``; ``--compile`` wraps the call
  in ``jax.jit``. float64 runs in JAX's 64-bit mode (``jax.enable_x64``), which JAX needs to
  compute in float64 at all (without it, float64 arrays silently become float32).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import numpy as np

from normcheck.errors import UsageError
from normcheck.options import DEFAULTS, AuditOptions
from normcheck.target.arrays import ArrayCandidate, Built, Forward
from normcheck.target.eps import module_eps
from normcheck.target.loading import construct_module, input_parameter
from normcheck.target.protocol import BIAS_NAMES, WEIGHT_NAMES, Layout


def require_jax() -> ModuleType:
    """Import jax, or fail with a one-line usage error that says how to install it."""
    try:
        return importlib.import_module("jax")
    except ImportError:
        raise UsageError("--framework jax needs JAX: install it with `pip install normcheck[jax]`") from None


def _flax(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"flax.{name}")
    except ImportError:
        return None


class JaxCandidate(ArrayCandidate):
    """A JAX function or Flax (nnx or linen) module, run in this process."""

    framework = "jax"
    array_name = "jax.Array"

    def __init__(self, target: object, name: str, options: AuditOptions = DEFAULTS) -> None:
        super().__init__(target, name, options)
        self.jax = require_jax()
        kind = {"cpu": "cpu", "cuda": "gpu"}.get(self.device.split(":")[0])
        try:
            devices = self.jax.devices(kind)
        except RuntimeError:
            devices = []
        if kind is None or not devices:
            raise UsageError(f"--device {self.device}: JAX has no such device here")
        self._device = devices[int(self.device.split(":")[1]) if ":" in self.device else 0]
        nnx, linen = _flax("nnx"), _flax("linen")
        if inspect.isclass(target) and nnx is not None and issubclass(target, nnx.Module):
            self.style = "module"
        elif inspect.isclass(target) and linen is not None and issubclass(target, linen.Module):
            self.style = "linen"
        elif inspect.isclass(target):
            raise UsageError(f"{name} is a class but not a Flax (nnx or linen) module")
        elif input_parameter(target) is None and nnx is not None:
            self.style = "factory"  # returns an nnx module
        else:
            self._function()
        if self.scheme is not None and self.style != "function":
            raise UsageError(f"--quant audits JAX functions; {name} is a Flax module")

    @contextmanager
    def _precision(self, dtype: str) -> Iterator[None]:
        if dtype == "float64":
            with self.jax.enable_x64(True):
                yield
        else:
            yield

    def _array(self, a: np.ndarray) -> object:
        return self.jax.device_put(np.array(a, copy=True), self._device)

    def _is_array(self, y: object) -> bool:
        return isinstance(y, self.jax.Array)

    def _ready(self, tree: object) -> None:
        self.jax.block_until_ready(tree)

    def _build(self, n: int, dtype: str) -> Built:
        jax = self.jax
        pdtype = jax.numpy.dtype(self.param_dtype or dtype)
        if self.style == "function":
            layout = self._function_layout(dtype)

            def apply(x: object, p: dict[str, object]) -> object:
                return self._call_function(n, x, p)

            roles: dict[str, str] = {"weight": "weight", "bias": "bias", "scale": "scale"}
        elif self.style == "linen":
            mod = construct_module(self.target, n, self.eps_override, {"param_dtype": pdtype}, positional_size=False)
            try:
                variables = mod.init(jax.random.key(0), jax.numpy.zeros((1, n), dtype))  # type: ignore[attr-defined]  # a linen module
            except Exception as exc:
                raise UsageError(
                    f"cannot initialize {self.name} on a row of {n}: {type(exc).__name__}: {exc}"
                ) from None
            values = dict(variables.get("params", {}))
            roles = _roles(values, n)
            layout = self._module_layout(mod, values, roles, dtype)

            def apply(x: object, p: dict[str, object]) -> object:
                params = {**values, **{roles[k]: v for k, v in p.items()}}
                return mod.apply({**variables, "params": params}, x)  # type: ignore[attr-defined]  # a linen module

        else:
            from flax import nnx

            mod = construct_module(self.target, n, self.eps_override, {"param_dtype": pdtype, "rngs": nnx.Rngs(0)})
            if not isinstance(mod, nnx.Module):
                raise UsageError(f"{self.name}({n}) returned a {type(mod).__name__}, not a Flax nnx module")
            graphdef, state, *rest = nnx.split(mod, nnx.Param, ...)
            values = nnx.to_pure_dict(state)
            roles = _roles(values, n)
            layout = self._module_layout(mod, values, roles, dtype)

            def apply(x: object, p: dict[str, object]) -> object:
                own = jax.tree.map(lambda a: a, state)  # a copy: the module's own state stays as built
                nnx.replace_by_pure_dict(own, {**values, **{roles[k]: v for k, v in p.items()}})
                return nnx.merge(graphdef, own, *rest)(x)

        if self.compile is not None:
            apply = jax.jit(apply)

        def call(x: object, params: dict[str, object], grad: np.ndarray | None) -> Forward:
            params = {k: v for k, v in params.items() if k in roles}
            if grad is None:
                return apply(x, params), None
            y, vjp = jax.vjp(apply, x, params)

            def pullback() -> dict[str, object]:
                dx, dp = vjp(self._array(grad).astype(y.dtype).reshape(y.shape))  # type: ignore[attr-defined]  # y: a jax array
                return {"x": dx, **dp}

            return y, pullback

        return Built(call, layout)

    def _module_layout(self, mod: object, values: dict, roles: dict[str, str], dtype: str) -> Layout:
        weight = values.get(roles.get("weight", ""))
        pdtype = str(weight.dtype) if weight is not None else self.param_dtype or dtype
        return Layout(module_eps(mod, self.name, dtype, self.eps_override), "weight" in roles, "bias" in roles, pdtype)


def _roles(values: dict, n: int) -> dict[str, str]:
    """Which of a module's parameters are its weight and its bias: 1-d, of the hidden size, by name."""
    vectors = [k for k, v in values.items() if np.ndim(v) == 1 and np.shape(v)[0] == n]
    roles = {}
    for role, names in (("weight", WEIGHT_NAMES), ("bias", BIAS_NAMES)):
        key = next((k for k in names if k in vectors), None)
        if key is not None:
            roles[role] = key
    return roles

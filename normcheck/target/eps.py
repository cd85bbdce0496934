"""The eps an implementation uses: stated, read from a module (or the one norm it wraps), a function's default,
or, for a module that states none (OLMo's LayerNorm hard-codes ``eps=1e-5`` in its forward), inferred from
its outputs."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

from normcheck.errors import UsageError
from normcheck.target.loading import EPS_NAMES, is_module_class


def torch_default_eps(dtype_name: str) -> float:
    """The eps torch uses when an RMSNorm's eps is None: finfo of the opmath dtype."""
    return 2.0**-52 if dtype_name == "float64" else 2.0**-23


def function_signature(target: object, name: str, eps: float | None) -> MappingProxyType:
    """A plain function's parameters; a usage error if it takes no eps and none is stated."""
    params = inspect.signature(target).parameters  # type: ignore[arg-type]  # a function target: callable
    if eps is None and not any(n in params for n in EPS_NAMES):
        raise UsageError(f"{name} takes no eps argument: pass the eps it uses with --eps")
    return params


def function_eps(params: Mapping[str, inspect.Parameter], dtype: str, override: float | None) -> float:
    """The eps a plain function uses: the stated one, else its eps parameter's default (None: torch's)."""
    if override is not None:
        return float(override)
    name = next(n for n in EPS_NAMES if n in params)
    default = params[name].default
    return torch_default_eps(dtype) if default in (None, inspect.Parameter.empty) else float(default)


def module_eps(module: object, name: str, dtype: str, override: float | None) -> float:
    """The eps a module uses: the stated one, else its first eps-like attribute, or that of the one
    norm it wraps (``self.ln = nn.LayerNorm(...)``); None means torch's."""
    if override is not None:
        return float(override)
    holder = module if _eps_attribute(module) is not None else _wrapped_norm(module)
    attr = None if holder is None else _eps_attribute(holder)
    if attr is None:
        raise EpsNotFound(
            f"cannot find the eps of {name} (no attribute {', '.join(EPS_NAMES)}, on it or on one norm it wraps): "
            "pass --eps"
        )
    value = getattr(holder, attr)
    return torch_default_eps(dtype) if value is None else float(value)


class EpsNotFound(UsageError):
    """A module that states no eps: its outputs may tell it (:func:`inferred_eps`)."""


#: The probe's magnitude: its rows' mean square (2**-68, about 3.4e-21, exact in float32) is negligible next to
#: any eps in use, so ``(x / y)**2`` is the eps itself, to float32 precision.
PROBE = 2.0**-34
#: The eps values implementations hard-code: 1, 2 and 5 times the powers of ten down to 1e-15, and powers of two.
EPS_VALUES = tuple(sorted({m * 10.0**-k for m in (1, 2, 5) for k in range(1, 16)} | {2.0**-k for k in range(4, 60)}))
#: How close an estimate must be to one of those (float32 probes estimate to about 1e-7).
EPS_MATCH = 1e-5


def inferred_eps(call: Callable[[np.ndarray], np.ndarray], n: int = 8) -> tuple[float | None, float]:
    """The eps a norm uses, from its output on one float32 row of ``+-PROBE`` (zero mean: RMSNorm and LayerNorm
    agree, ``y = x / sqrt(PROBE**2 + eps)`` with unit weights): ``(eps, estimate)``, eps None where the estimate
    is none of :data:`EPS_VALUES`."""
    x = (PROBE * np.resize([1.0, -1.0], 2 * (n // 2) or 2)).astype(np.float32).reshape(1, -1)
    with np.errstate(all="ignore"):
        y = np.asarray(call(x), dtype=np.float64)
        estimate = float(np.mean((x.astype(np.float64) / y) ** 2) - PROBE**2)
    if not np.isfinite(estimate) or estimate <= 0:
        return None, estimate
    best = min(EPS_VALUES, key=lambda e: abs(estimate - e) / e)
    return (best if abs(estimate - best) <= EPS_MATCH * best else None), estimate


def _eps_attribute(obj: object) -> str | None:
    """The first of :data:`EPS_NAMES` ``obj`` has as an attribute, or None."""
    return next((attr for attr in EPS_NAMES if hasattr(obj, attr)), None)


def _wrapped_norm(module: object) -> object | None:
    """The one submodule of a torch module with an eps attribute (the norm it wraps); None if none or several."""
    if not is_module_class(type(module)):
        return None
    held = [m for m in module.modules() if m is not module and _eps_attribute(m) is not None]  # type: ignore[attr-defined]  # a torch module
    return held[0] if len(held) == 1 else None

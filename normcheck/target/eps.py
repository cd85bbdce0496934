"""The eps an implementation uses: stated, read from a module (or the one norm it wraps), or a function's default."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType

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
        raise UsageError(
            f"cannot find the eps of {name} (no attribute {', '.join(EPS_NAMES)}, on it or on one norm it wraps): "
            "pass --eps"
        )
    value = getattr(holder, attr)
    return torch_default_eps(dtype) if value is None else float(value)


def _eps_attribute(obj: object) -> str | None:
    """The first of :data:`EPS_NAMES` ``obj`` has as an attribute, or None."""
    return next((attr for attr in EPS_NAMES if hasattr(obj, attr)), None)


def _wrapped_norm(module: object) -> object | None:
    """The one submodule of a torch module with an eps attribute (the norm it wraps); None if none or several."""
    if not is_module_class(type(module)):
        return None
    held = [m for m in module.modules() if m is not module and _eps_attribute(m) is not None]  # type: ignore[attr-defined]  # a torch module
    return held[0] if len(held) == 1 else None

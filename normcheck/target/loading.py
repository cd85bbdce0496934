"""Find the implementation a user names and make a callable normalization out of it.

A target is ``pkg.mod.Name``, ``pkg.mod:Name``, ``path/to/file.py:Name`` or any
importable callable: a ``torch.nn.Module`` class, a factory returning a module,
or a plain function of a tensor (``torch.nn.functional.rms_norm``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path

from normcheck.errors import UsageError

#: Constructor parameter names third-party code uses for the hidden size, and for eps.
SIZE_NAMES = ("dim", "hidden_size", "normalized_shape", "d_model", "n_embd", "num_features", "size", "features")
EPS_NAMES = ("eps", "variance_epsilon", "epsilon", "layer_norm_eps", "norm_eps", "rms_norm_eps")
#: Parameter names a plain function uses for its input tensor.
INPUT_NAMES = ("input", "x", "hidden_states", "inputs", "tensor", "hidden")


def load_target(spec: str) -> object:
    """Import and return the object ``spec`` names; one-line :class:`UsageError` if it cannot."""
    if not spec or spec.strip() != spec:
        raise UsageError(f"invalid target {spec!r}: expected e.g. mypkg.RMSNorm or path/to/file.py:Name")
    if ":" in spec:
        where, _, attr = spec.rpartition(":")
        module = _import_file(where) if where.endswith(".py") else _import_module(where, spec)
        return _get_attr(module, attr, spec)
    parts = spec.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:cut])
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing_itself = exc.name is None or name == exc.name or name.startswith(exc.name + ".")
            if not missing_itself:  # a module it imports is missing: say which
                raise UsageError(f"cannot import {name!r} for target {spec!r}: {exc}") from None
            continue
        except Exception as exc:  # the user's module failed while importing
            raise UsageError(f"importing {name!r} for target {spec!r} failed: {type(exc).__name__}: {exc}") from None
        return _get_attr(module, ".".join(parts[cut:]), spec)
    raise UsageError(f"cannot import target {spec!r}: no module {parts[0]!r} (is it installed or on PYTHONPATH?)")


def _import_module(name: str, spec: str) -> object:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise UsageError(f"cannot import {name!r} for target {spec!r}: {exc}") from None
    except Exception as exc:
        raise UsageError(f"importing {name!r} for target {spec!r} failed: {type(exc).__name__}: {exc}") from None


def _import_file(path: str) -> object:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such file {path!r}")
    name = f"_normcheck_target_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load {path!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UsageError(f"running {path!r} failed: {type(exc).__name__}: {exc}") from None
    return module


def _get_attr(module: object, attr: str, spec: str) -> object:
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            where = getattr(obj, "__name__", repr(obj))
            raise UsageError(f"target {spec!r}: {where} has no attribute {part!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"target {spec!r} is a {type(obj).__name__}, not a class or function")
    return obj


def is_module_class(obj: object) -> bool:
    """Whether ``obj`` is a ``torch.nn.Module`` subclass."""
    torch = sys.modules.get("torch")
    return inspect.isclass(obj) and torch is not None and issubclass(obj, torch.nn.Module)


def construct_module(
    maker: object,
    hidden: int,
    eps: float | None,
    extra: Mapping[str, object] | None = None,
    *,
    positional_size: bool = True,
) -> object:
    """Call a module class or factory the way third-party code spells its constructor.

    The hidden size goes to the first of :data:`SIZE_NAMES` it takes (else, with
    ``positional_size``, to its first positional parameter, unless that is named like an
    eps: a constructor that takes no size gets none), as ``(hidden,)`` where an int is
    refused with a TypeError (a shape such as ``normalized_shape[-1]``); ``eps``, when
    given, to the first of :data:`EPS_NAMES` it takes (a constructor without one keeps the
    eps it hard-codes); each of ``extra`` (Flax's ``param_dtype``, ``rngs``) where it takes
    that name or ``**kwargs``.
    """
    try:
        if inspect.isclass(maker):
            params: list[inspect.Parameter] | None = list(inspect.signature(maker.__init__).parameters.values())[1:]
        else:
            params = list(inspect.signature(maker).parameters.values())  # type: ignore[arg-type]  # TypeError if not callable
    except (TypeError, ValueError):
        params = None  # unknown: the size goes first
    name = getattr(maker, "__name__", repr(maker))
    names = [p.name for p in params or ()]
    kwargs: dict[str, object] = {}
    args: list[object] = []
    size_name = next((n for n in SIZE_NAMES if n in names), None)
    if size_name is not None:
        kwargs[size_name] = hidden
    elif positional_size and _takes_size_first(params):
        args.append(hidden)
    eps_name = next((n for n in EPS_NAMES if n in names), None)
    if eps is not None and eps_name is not None:  # an eps the module hard-codes is stated, not passed
        kwargs[eps_name] = eps
    passes_on = any(p.kind == p.VAR_KEYWORD for p in params or ())  # a subclass's **kwargs, for its base class
    kwargs.update({k: v for k, v in (extra or {}).items() if k in names or passes_on})
    attempts = [(args, kwargs)]
    if size_name is not None:  # an int refused with a TypeError may be wanted as a shape (``hidden_size[-1]``)
        attempts.append((args, {**kwargs, size_name: (hidden,)}))
    elif args:
        attempts.append(([(hidden,)], kwargs))
    errors: list[Exception] = []
    for call_args, call_kwargs in attempts:
        try:
            return maker(*call_args, **call_kwargs)  # type: ignore[operator]  # a class or factory, as the user gave it
        except Exception as exc:
            errors.append(exc)
            if not isinstance(exc, TypeError):
                break
    shown = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    raise UsageError(f"cannot construct {name}({shown}): {type(errors[0]).__name__}: {errors[0]}") from None


def _takes_size_first(params: list[inspect.Parameter] | None) -> bool:
    """Whether a constructor with these parameters (None: unknown) takes the hidden size first, by position:
    its first parameter is positional and not named like an eps, or it takes ``*args``."""
    if params is None:
        return True
    first = params[0] if params else None
    if first is not None and first.kind in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD):
        return first.name not in EPS_NAMES
    return any(p.kind == p.VAR_POSITIONAL for p in params)


def input_parameter(fn: object) -> str | None:
    """The name of a plain function's input-tensor parameter, or None if it has none."""
    try:
        params = list(inspect.signature(fn).parameters)  # type: ignore[arg-type]  # TypeError if not callable
    except (TypeError, ValueError):
        return None
    if params and params[0] in INPUT_NAMES:
        return params[0]
    return None

"""Implementations in any framework: torch (the default), JAX and Flax, or plain numpy functions.

Every framework's candidate answers the interface of :class:`normcheck.target.torch_target.Candidate`
(``describe``, ``run``, ``supports_grad``, ``style``, ...); :func:`make_candidate` picks
one, by the framework named or, where that is unambiguous, by the target itself.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from normcheck.errors import UsageError

if TYPE_CHECKING:
    from normcheck.target.torch_target import Candidate

FRAMEWORKS = ("torch", "jax", "numpy")
#: Top-level packages whose classes and functions are JAX targets.
JAX_PACKAGES = ("jax", "jaxlib", "flax")


def _package(obj: object) -> str:
    return (getattr(obj, "__module__", None) or "").split(".")[0]


def detect_framework(target: object) -> str:
    """``jax`` for Flax module classes and for functions of jax or flax (jitted ones too); else ``torch``.

    A plain function of the user's is torch's unless ``--framework`` says otherwise:
    from its code alone, a function of jax arrays looks like one of tensors or of numpy arrays.
    """
    if inspect.isclass(target):
        owners = inspect.getmro(target)
    else:
        owners = (target, type(target))
    return "jax" if any(_package(owner) in JAX_PACKAGES for owner in owners) else "torch"


def make_candidate(target: object, name: str, *, framework: str | None = None, **options: object) -> Candidate | object:
    """The in-process candidate for ``target`` in ``framework`` (detected when None).

    ``options`` are :class:`~normcheck.target.torch_target.Candidate`'s: ``device``, ``eps``,
    ``timeout``, ``compile``, ``param_dtype``.
    """
    framework = framework or detect_framework(target)
    if framework == "torch":
        from normcheck.target.torch_target import Candidate

        return Candidate(target, name, **options)  # type: ignore[arg-type]
    if framework == "jax":
        from normcheck.target.jax_target import JaxCandidate

        return JaxCandidate(target, name, **options)  # type: ignore[arg-type]
    if framework == "numpy":
        from normcheck.target.numpy_target import NumpyCandidate

        return NumpyCandidate(target, name, **options)  # type: ignore[arg-type]
    raise UsageError(f"--framework must be one of {', '.join(FRAMEWORKS)}, got {framework!r}")

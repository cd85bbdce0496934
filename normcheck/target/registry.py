"""Implementations in any framework: torch (the default), JAX and Flax, or plain numpy functions.

Every framework's candidate answers the interface of :class:`normcheck.target.torch_target.Candidate`
(``describe``, ``run``, ``supports_grad``, ``style``, ...); :func:`make_candidate` picks
one, by the framework named or, where that is unambiguous, by the target itself.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from normcheck.options import DEFAULTS, AuditOptions, Framework

if TYPE_CHECKING:
    from normcheck.target.arrays import ArrayCandidate
    from normcheck.target.torch_target import Candidate

#: Top-level packages whose classes and functions are JAX targets.
JAX_PACKAGES = ("jax", "jaxlib", "flax")


def _package(obj: object) -> str:
    return (getattr(obj, "__module__", None) or "").split(".")[0]


def detect_framework(target: object) -> Framework:
    """``jax`` for Flax module classes and for functions of jax or flax (jitted ones too); else ``torch``.

    A plain function of the user's is torch's unless ``--framework`` says otherwise:
    from its code alone, a function of jax arrays looks like one of tensors or of numpy arrays.
    """
    owners: tuple[object, ...]
    if inspect.isclass(target):
        owners = inspect.getmro(target)
    else:
        owners = (target, type(target))
    return Framework.JAX if any(_package(owner) in JAX_PACKAGES for owner in owners) else Framework.TORCH


def make_candidate(target: object, name: str, options: AuditOptions = DEFAULTS) -> Candidate | ArrayCandidate:
    """The in-process candidate for ``target`` in ``options.framework`` (detected when None)."""
    framework = options.framework or detect_framework(target)
    if framework == Framework.TORCH:
        from normcheck.target.torch_target import Candidate

        return Candidate(target, name, options)
    if framework == Framework.JAX:
        from normcheck.target.jax_target import JaxCandidate

        return JaxCandidate(target, name, options)
    from normcheck.target.numpy_target import NumpyCandidate  # (the options checked the name)

    return NumpyCandidate(target, name, options)

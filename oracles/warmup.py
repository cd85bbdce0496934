"""Compile the oracles' kernels before their first use.

numba compiles a kernel on its first call and caches the machine code on disk:
beside the module, or in numba's user-wide cache directory where the package
directory is read-only (``NUMBA_CACHE_DIR`` overrides both). The first use on a
machine pays the compile, every later process loads the cached code. Calling
:func:`warm_up` while something else runs (an auditor waiting for its worker
process to import the implementation) moves that compile off the critical path.
"""

from __future__ import annotations

import numpy as np

from oracles import kernels
from oracles.exact import Exact, kernel_view
from oracles.formats import resolve_format
from oracles.layernorm import layer_norm, layer_norm_backward
from oracles.rmsnorm import rms_norm, rms_norm_backward


def warm_up() -> None:
    """Run the kernels of 16- and 32-bit inputs once each (forward, backward, rounding, ulp error, exceeds, ulps) on a
    tiny input, so that numba compiles them or loads them from its cache now.

    >>> warm_up()  # compiles on a machine's first call; loads the cached kernels on later ones
    """
    x = np.array([[3.0, -1.0, 4.0, 1.5], [2.0, 7.0, -1.0, 8.0]], np.float32)
    w, b, g = np.full(4, 0.5, np.float32), np.full(4, 0.25, np.float32), np.ones_like(x)
    results: list[Exact | None] = [rms_norm(x, w), layer_norm(x, w, b)]
    results += [*rms_norm_backward(x, g, w), *layer_norm_backward(x, g, w, b)]
    for exact in results:
        if exact is not None:
            rounded = exact.round("float32")
            exact.ulp_error(rounded)
            exact.exceeds(rounded, 0.0)
    single = resolve_format("float32")
    kernels.ulps(kernel_view(x.astype(np.float64)), single.precision, single.emin, np.empty(x.size))


__all__ = ["warm_up"]

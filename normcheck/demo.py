"""A small end-to-end look at the oracle: torch's RMSNorm judged in ULPs of each format."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

import oracles
from normcheck.target.torch_bridge import from_numpy, require_torch, to_numpy


@dataclass(frozen=True)
class DemoRow:
    """ULP statistics of one dtype."""

    dtype: str
    max_ulp: float
    mean_ulp: float
    signed_mean_ulp: float
    correctly_rounded: float  # fraction of outputs equal to the correct rounding


def run_demo(rows: int = 16, hidden: int = 4096, seed: int = 0) -> tuple[list[DemoRow], float]:
    """ULP errors of ``torch.nn.functional.rms_norm`` against the exact oracle, per dtype.

    Returns the rows of statistics and the time the oracle took, in seconds.
    """
    torch = require_torch()
    rng = np.random.default_rng(seed)
    out, oracle_time = [], 0.0
    for name in ("float16", "bfloat16", "float32"):
        fmt = oracles.resolve_format(name)
        x = rng.standard_normal((rows, hidden)).astype(fmt.dtype)
        w = (1 + 0.1 * rng.standard_normal(hidden)).astype(fmt.dtype)
        eps = 1e-6
        y = torch.nn.functional.rms_norm(from_numpy(x), (hidden,), from_numpy(w), eps)
        start = time.perf_counter()
        exact = oracles.rms_norm(x, w, eps)
        err = exact.signed_ulp_error(to_numpy(y))
        correct = np.mean(to_numpy(y).astype(np.float64) == exact.round(fmt).astype(np.float64))
        oracle_time += time.perf_counter() - start
        out.append(
            DemoRow(name, float(np.max(np.abs(err))), float(np.mean(np.abs(err))), float(np.mean(err)), float(correct))
        )
    return out, oracle_time

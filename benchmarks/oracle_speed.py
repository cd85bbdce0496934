"""Oracle speed against plain float64 evaluations and a naive mpmath loop (issue: exact oracles).

Measures, single-threaded, on (64, 4096) float32 inputs rounded to float32:
the exact oracle; numpy float64 and torch float64 evaluations of the same
formula (fast, not exact); and a naive per-element mpmath evaluation (timed on
a few rows and scaled to the full size). Prints the ratios the targets name:
oracle / numpy (target <= 4, goal <= 2) and mpmath / oracle (target >= 100).
Then float64 inputs rounded to float64 (the double-word tier) against numpy's
float64 formula (issue 14: within 4x), and the oracle on (4096, 4096) float32
on every core against one thread (target: a speed-up of at least 0.7 x cores).

    python benchmarks/oracle_speed.py [--rows 64] [--hidden 4096] [--repeat 15] [--big-rows 4096]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import mpmath  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402

import oracles  # noqa: E402

EPS = 1e-6


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def numpy_rms(x, w):
    xd = x.astype(np.float64)
    r = 1.0 / np.sqrt(np.mean(xd * xd, axis=-1, keepdims=True) + EPS)
    return (xd * r * w.astype(np.float64)).astype(x.dtype)


def numpy_ln(x, w, b):
    xd = x.astype(np.float64)
    d = xd - xd.mean(axis=-1, keepdims=True)
    r = 1.0 / np.sqrt(np.mean(d * d, axis=-1, keepdims=True) + EPS)
    return (d * r * w.astype(np.float64) + b.astype(np.float64)).astype(np.float32)


def numpy_rms_backward(x, g, w):
    xd, gd, wd = x.astype(np.float64), g.astype(np.float64), w.astype(np.float64)
    r = 1.0 / np.sqrt(np.mean(xd * xd, axis=-1, keepdims=True) + EPS)
    xhat = xd * r
    h = gd * wd
    dx = r * (h - xhat * np.mean(h * xhat, axis=-1, keepdims=True))
    dw = np.sum(gd * xhat, axis=0)
    return dx.astype(x.dtype), dw.astype(x.dtype)


def torch_fns():
    import torch

    torch.set_num_threads(1)

    def rms(x, w):
        xd, wd = torch.from_numpy(x).double(), torch.from_numpy(w).double()
        return (xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + EPS) * wd).float()

    def ln(x, w, b):
        xd = torch.from_numpy(x).double()
        y = torch.nn.functional.layer_norm(
            xd, (x.shape[-1],), torch.from_numpy(w).double(), torch.from_numpy(b).double(), EPS
        )
        return y.float()

    def rms_backward(x, g, w):
        xd, gd, wd = (torch.from_numpy(a).double() for a in (x, g, w))
        r = torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + EPS)
        xhat = xd * r
        h = gd * wd
        dx = r * (h - xhat * (h * xhat).mean(-1, keepdim=True))
        return dx.float(), (gd * xhat).sum(0).float()

    return rms, ln, rms_backward


def naive_mpmath_rms_seconds_per_element(x, w, rows: int = 2) -> float:
    """Per-element mpmath RMSNorm at 113 bits (rounded through mpmath, not proven)."""
    start = time.perf_counter()
    with mpmath.workprec(113):
        for row in x[:rows]:
            xs = [mpmath.mpf(float(v)) for v in row]
            r = 1 / mpmath.sqrt(mpmath.fsum(v * v for v in xs) / len(xs) + mpmath.mpf(EPS))
            _ = [float(v * r * mpmath.mpf(float(wi))) for v, wi in zip(xs, w)]
    return (time.perf_counter() - start) / (rows * x.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--big-rows", type=int, default=4096)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shape = (args.rows, args.hidden)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(args.hidden).astype(np.float32)
    b = rng.standard_normal(args.hidden).astype(np.float32)
    try:
        t_rms, t_ln, t_rms_bwd = torch_fns()
    except ImportError:
        t_rms = t_ln = t_rms_bwd = None

    def oracle_rms_bwd(x, g, w, fmt="float32"):
        dx, dw = oracles.rms_norm_backward(x, g, w, EPS, threads=1)
        return dx.round(fmt), dw.round(fmt)

    cases = [
        (
            "rms_norm",
            lambda: oracles.rms_norm(x, w, EPS, threads=1).round("float32"),
            lambda: numpy_rms(x, w),
            t_rms and (lambda: t_rms(x, w)),
        ),
        (
            "layer_norm",
            lambda: oracles.layer_norm(x, w, b, EPS, threads=1).round("float32"),
            lambda: numpy_ln(x, w, b),
            t_ln and (lambda: t_ln(x, w, b)),
        ),
        (
            "rms_norm_backward",
            lambda: oracle_rms_bwd(x, g, w),
            lambda: numpy_rms_backward(x, g, w),
            t_rms_bwd and (lambda: t_rms_bwd(x, g, w)),
        ),
    ]
    naive_ms = naive_mpmath_rms_seconds_per_element(x, w) * x.size * 1e3
    print(f"inputs {shape} float32 -> float32, one thread, median of {args.repeat}")
    print(f"naive per-element mpmath rms_norm (scaled from 2 rows): {naive_ms:9.1f} ms")
    columns = ("oracle ms", "numpy64 ms", "torch64 ms", "oracle/numpy", "mpmath/oracle")
    print(f"{'operation':<18}" + "".join(f"{c:>14}" for c in columns))
    for name, oracle_fn, numpy_fn, torch_fn in cases:
        o = median_ms(oracle_fn, args.repeat)
        n = median_ms(numpy_fn, args.repeat)
        t = median_ms(torch_fn, args.repeat) if torch_fn else float("nan")
        speedup = f"{naive_ms / o:14.0f}" if name == "rms_norm" else ""
        print(f"{name:<18}{o:14.2f}{n:14.2f}{t:14.2f}{o / n:14.2f}{speedup}")

    x64, g64, w64 = (a.astype(np.float64) for a in (x, g, w))
    print(f"\ninputs {shape} float64 -> float64 (double words), one thread, median of {args.repeat}")
    print(f"{'operation':<18}" + "".join(f"{c:>14}" for c in columns[:2] + columns[3:4]))
    for name, oracle_fn, numpy_fn in (
        ("rms_norm", lambda: oracles.rms_norm(x64, w64, EPS, threads=1).round("float64"), lambda: numpy_rms(x64, w64)),
        (
            "rms_norm_backward",
            lambda: oracle_rms_bwd(x64, g64, w64, "float64"),
            lambda: numpy_rms_backward(x64, g64, w64),
        ),
    ):
        o, n = median_ms(oracle_fn, args.repeat), median_ms(numpy_fn, args.repeat)
        print(f"{name:<18}{o:14.2f}{n:14.2f}{o / n:14.2f}")

    cores = numba.config.NUMBA_NUM_THREADS
    big = rng.standard_normal((args.big_rows, args.hidden)).astype(np.float32)
    repeat = max(3, args.repeat // 5)
    print(f"\nrms_norm on ({args.big_rows}, {args.hidden}) float32 -> float32, median of {repeat}")
    one = median_ms(lambda: oracles.rms_norm(big, w, EPS, threads=1).round("float32"), repeat)
    every = median_ms(lambda: oracles.rms_norm(big, w, EPS, threads=cores).round("float32"), repeat)
    print(f"one thread {one:.1f} ms, {cores} threads {every:.1f} ms: speed-up {one / every:.2f}")


if __name__ == "__main__":
    main()

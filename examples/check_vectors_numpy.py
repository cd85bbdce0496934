"""Use normcheck's test vectors without normcheck: a numpy float32 RMSNorm/LayerNorm scored against them.

    python examples/check_vectors_numpy.py examples/vectors/rmsnorm-float32.json [results.json]

Reads the corpus, computes y for every case (all in fp32, one final rounding),
judges each output against the exact value and the case's ULP bound, prints the
failing cases with their comments, and optionally writes the outputs in the
results format `normcheck check-vectors` reads. Needs numpy (and ml_dtypes for
bfloat16 files) only.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction

import numpy as np


def dtype_of(name: str):
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(name)


def forward(kind: str, x: np.ndarray, w: np.ndarray, b, eps: float, offset: int, work: type) -> np.ndarray:
    """All in ``work`` precision (fp32, or fp64 for float64 files), one final rounding by the caller."""
    x = x.astype(work)
    if kind == "layernorm":
        x = x - x.mean(axis=-1, keepdims=True)
    r = work(1) / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + work(eps))
    y = x * r * (w.astype(work) + work(offset))
    return y + b.astype(work) if b is not None else y


def floor_log2(q: Fraction) -> int:
    num, den = abs(q.numerator), q.denominator
    e = num.bit_length() - den.bit_length()
    return e - 1 if (num << max(0, -e)) < (den << max(0, e)) else e


def ulp_error(c: float, exact: str, fmt: dict) -> float:
    """|c - exact| / ulp(exact) in the file's format (normcheck's docs/theory.md, section 3)."""
    y = Fraction(exact)
    e = fmt["emin"] if y == 0 else max(floor_log2(y), fmt["emin"])
    return float(abs(Fraction(c) - y) / Fraction(2) ** (e - fmt["precision"] + 1))


def score(test: dict, output: str, values: np.ndarray, fmt: dict) -> str | None:
    """Why ``values`` (one output of one case) fail, or None: the first element out of bounds.

    A non-finite value passes only where the correctly rounded exact value is that
    same infinity (an overflow); undefined exact values (null, 0/0) accept anything.
    """
    cases = zip(values, test["exact"][output], test["expected"][output], test["allowed_ulp"][output])
    for i, (c, exact, expected, allowed) in enumerate(cases):
        if exact is None:
            continue
        if not np.isfinite(c):
            if c != float.fromhex(expected):
                return f"{output}[{i}]: {c} where the exact value is {exact} (correctly rounded: {expected})"
            continue
        err = ulp_error(float(c), exact, fmt)
        if err > allowed:
            return f"{output}[{i}]: {err:.3g} ulp > {allowed}"
    return None


def main() -> int:
    corpus = json.load(open(sys.argv[1]))
    dt = dtype_of(corpus["dtype"])
    results, failed = [], 0
    work = np.float64 if corpus["dtype"] == "float64" else np.float32
    for t in corpus["tests"]:
        h = lambda xs: np.array([float.fromhex(v) for v in xs])  # noqa: E731
        x = h(t["x"]).reshape(t["shape"])
        bias = None if t["bias"] is None else h(t["bias"])
        y = forward(corpus["algorithm"], x, h(t["weight"]), bias, float.fromhex(t["eps"]), t["weight_offset"], work)
        with np.errstate(all="ignore"):
            out = y.astype(dt).astype(np.float64).ravel()
        results.append({"tcId": t["tcId"], "y": [float(v).hex() for v in out]})
        why = score(t, "y", out, corpus["format"])
        if why is not None:
            failed += 1
            print(f"tcId {t['tcId']} {why} -- {t['comment']}")
    if len(sys.argv) > 2:
        json.dump({"tests": results}, open(sys.argv[2], "w"))
    print(f"{len(corpus['tests']) - failed} of {len(corpus['tests'])} cases within their bounds")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

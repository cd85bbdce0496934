"""norm_outputs: the outputs of one call by kind, each the same as the oracle function that computes it."""

from __future__ import annotations

import numpy as np
import pytest

import oracles

RNG = np.random.default_rng(7)
X = RNG.standard_normal((3, 5)).astype(np.float32)
G = RNG.standard_normal((3, 5)).astype(np.float32)
W = RNG.standard_normal(5).astype(np.float32)
B = RNG.standard_normal(5).astype(np.float32)


def _same(a: oracles.Exact, b: oracles.Exact) -> bool:
    return np.array_equal(a.round(oracles.FLOAT64), b.round(oracles.FLOAT64))


@pytest.mark.parametrize(
    "kind, w, b, keys",
    [
        ("rmsnorm", W, None, {"y", "dx", "dw"}),
        ("rmsnorm", None, None, {"y", "dx"}),
        ("layernorm", W, B, {"y", "dx", "dw", "db"}),
        ("layernorm", W, None, {"y", "dx", "dw"}),
    ],
)
def test_the_outputs_are_those_the_parameters_have(kind, w, b, keys):
    assert set(oracles.norm_outputs(kind, X, w, b, 1e-5, 0)) == {"y"}
    assert set(oracles.norm_outputs(kind, X, w, b, 1e-5, 0, G)) == keys


def test_each_output_is_the_oracle_functions():
    rms = oracles.norm_outputs("rmsnorm", X, W, None, 1e-5, 1, G)
    dx, dw = oracles.rms_norm_backward(X, G, W, 1e-5, 1)
    assert _same(rms["y"], oracles.rms_norm(X, W, 1e-5, 1)) and _same(rms["dx"], dx) and _same(rms["dw"], dw)
    ln = oracles.norm_outputs("layernorm", X, W, B, 1e-5, 0, G)
    dx, dw, db = oracles.layer_norm_backward(X, G, W, B, 1e-5, 0)
    assert _same(ln["y"], oracles.layer_norm(X, W, B, 1e-5, 0))
    assert _same(ln["dx"], dx) and _same(ln["dw"], dw) and _same(ln["db"], db)
    assert not _same(ln["y"], rms["y"])

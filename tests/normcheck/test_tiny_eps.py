"""Tiny eps on near-constant rows: correct float32 code amplifies the mean's rounding error by rstd."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from normcheck.api import audit
from normcheck.strategies import Source, make_input
from normcheck.verdict.bounds import bounds, sharpen
from normcheck.verdict.references import correct_outputs
from oracles import layer_norm, layer_norm_backward, resolve_format

NEAR_CONSTANT = {"constant", "near_constant", "offset"}


@pytest.mark.parametrize("eps", [1e-12, 1e-7])
@pytest.mark.parametrize(
    "spec, kind",
    [
        ("tests.normcheck.zoo:TwoPassLayerNorm", "layernorm"),
        ("torch.nn.LayerNorm", "layernorm"),
        ("torch.nn.RMSNorm", "rmsnorm"),
    ],
)
def test_correct_float32_norms_pass_tiny_eps_on_constant_and_near_constant_rows(spec, kind, eps):
    """The structured cases hold constant, constant plus one ulp, and offset rows at n = 61 and 16385."""
    result = audit(spec, kind=kind, dtype="float32", eps=eps, examples=0, in_process=True)
    assert result.passed, [f.message for f in result.findings]
    outputs = {"y", "dx", "dw", "db"} if kind == "layernorm" else {"y", "dx", "dw"}
    for output in outputs:
        regimes = {regime for (_, out, regime) in result.stats if out == output}
        assert regimes >= NEAR_CONSTANT, (output, regimes)


@pytest.mark.parametrize("n", [61, 16385])
def test_the_rigorous_dx_bound_covers_the_mean_error_times_rstd_on_a_constant_row(n):
    """A float32 two-pass dx on a constant row (exact xhat = 0, rstd = 1e6) is off by percents of r*|h|:
    the computed mean's error e, times r_c, moves every xhat by up to 1. The bound must hold that."""
    torch = pytest.importorskip("torch")
    fmt = resolve_format("float32")
    case = make_input(Source(rng=np.random.default_rng(1)), fmt, n=n, rows=1, regime="constant", eps=1e-12)
    case.x[:] = np.float32(3.3)  # (torch's float32 mean of this row is off by 1 to 3 ulps at both sizes)
    x, w, b, g = (torch.tensor(a, requires_grad=True) for a in (case.x, case.weight, case.bias, case.grad))
    mean = x.mean(-1, keepdim=True)
    xhat = (x - mean) * torch.rsqrt(((x - mean) ** 2).mean(-1, keepdim=True) + 1e-12)
    (xhat * w + b).backward(g)
    exact_dx = layer_norm_backward(case.x, case.grad, case.weight, case.bias, 1e-12)[0]
    exact = {"y": layer_norm(case.x, case.weight, case.bias, 1e-12), "dx": exact_dx}
    limit = bounds(
        "layernorm", fmt, case.x, exact, weight=case.weight, bias=case.bias, grad=case.grad, eps=1e-12, offset=0
    )["dx"]
    err = np.abs(x.grad.numpy().astype(np.float64) - exact_dx.approx)
    assert err.max() > 1e-2 * np.abs(exact_dx.approx).max()  # the effect is real and large
    assert (err <= limit.allowed("rigorous")).all()


def test_the_sharp_bound_of_an_element_the_oracle_leaves_unresolved_holds_its_own_references():
    """bfloat16 [2^22, 2^22] at eps 1e-7: the oracle's float64 dx is proven to 2^-39 of its scale only,
    so K leaves the element out; Flax's cast order (its own emulation errs as much) must still pass."""
    torch = pytest.importorskip("torch")
    import ml_dtypes

    from tests.normcheck.zoo import CastApartLayerNorm

    fmt, eps = resolve_format("bfloat16"), 1e-7
    x, w = np.full((1, 2), 2.0**22, ml_dtypes.bfloat16), np.full(2, 1.0625, ml_dtypes.bfloat16)
    b, g = np.array([0.7734375, 0.640625], ml_dtypes.bfloat16), np.array([[1.7109375, 3.90625]], ml_dtypes.bfloat16)
    dx, dw, db = layer_norm_backward(x, g, w, b, eps)
    exact = {"y": layer_norm(x, w, b, eps), "dx": dx, "dw": dw, "db": db}
    assert (dx.error_bound > 2.0**-40 * np.abs(dx.approx)).all()  # the case this test is about
    limits = bounds("layernorm", fmt, x, exact, weight=w, bias=b, grad=g, eps=eps, offset=0)
    limit = sharpen(limits, fmt, exact, *correct_outputs("layernorm", x, w, b, g, eps, 0))["dx"]
    module = CastApartLayerNorm(2, eps=eps).to(torch.bfloat16)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(w.astype(np.float32)))
        module.bias.copy_(torch.tensor(b.astype(np.float32)))
    xt = torch.tensor(x.astype(np.float32)).to(torch.bfloat16).requires_grad_()
    module(xt).backward(torch.tensor(g.astype(np.float32)).to(torch.bfloat16))
    err = np.abs(xt.grad.float().numpy().astype(np.float64) - dx.approx)
    assert err.max() > 8 * 2 * 2.0**-24 * limit.scale.max()  # beyond what K = 2 u_c alone would allow
    assert (err <= limit.allowed("sharp")).all()


@pytest.mark.parametrize("spec", ["tests.normcheck.zoo:LlamaRMSNorm", "tests.normcheck.zoo:T5LayerNorm"])
def test_an_overflow_is_allowed_where_a_correct_convention_may_overflow(spec):
    """At eps 1e-12 in float16 (seed 0): Llama's autograd gives dx = -inf where the exact value, -65507.6,
    rounds to -65504 but lies within the rigorous bound of the overflow threshold (65520); T5's casts each
    path of dx to float16, and those paths (of order r |h|, 1e6) overflow where dx itself (6e4) does not."""
    result = audit(spec, kind="rmsnorm", dtype="float16", eps=1e-12, seed=0)
    assert result.passed, [f.message for f in result.findings]
    assert result.totals()[("float16", "dx")].summary()["count"] > 0

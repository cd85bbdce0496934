"""A short runnable Python snippet that reproduces a finding, inputs as exact hex floats."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from normcheck.candidate import RESIDUAL_NAMES, Candidate, function_arguments
from normcheck.strategies import NormInput

if TYPE_CHECKING:
    from normcheck.isolation import IsolatedCandidate


def _hex_values(a: np.ndarray) -> tuple[str, str]:
    """The elements of ``a`` as exact hex floats (``h = float.fromhex`` in the snippet), and its shape."""
    values = ", ".join(f'h("{float(v).hex()}")' for v in np.asarray(a, dtype=np.float64).ravel())
    return f"[{values}]", ", ".join(str(d) for d in a.shape)


def _tensor(a: np.ndarray, dtype: str) -> str:
    values, shape = _hex_values(a)
    return f"torch.tensor({values}, dtype=torch.{dtype}).reshape({shape})"


def snippet(
    spec: str,
    candidate: Candidate | IsolatedCandidate,
    kind: str,
    case: NormInput,
    dtype: str,
    eps: float,
    offset: int,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
) -> str:
    """Code that rebuilds the input, calls the implementation as the audit did and prints its error.

    It runs in a fresh process (``python -c``), so it reproduces crashes and hangs too.
    JAX and numpy targets are called through normcheck's candidate for their framework,
    which builds and calls them exactly as the audit did (:func:`array_snippet`).
    """
    if candidate.framework != "torch":
        return array_snippet(spec, candidate, kind, case, dtype, eps, offset, weight, bias)
    n = case.n
    wdt = str(weight.dtype) if weight is not None else dtype
    fused = case.residual is not None
    out = "out" if fused else "y"
    lines = [
        "import numpy as np, torch, oracles",
        "from normcheck.loading import construct_module, load_target",
        "h = float.fromhex",
        f'target = load_target("{spec}")',
        f"x = {_tensor(case.x, dtype)}",
    ]
    if fused:
        lines.append(f"r = {_tensor(case.residual, dtype)}")
    if case.strided:
        lines.append("x = x.t().contiguous().t()  # the audit passed a non-contiguous (transposed) view")
        if fused:
            lines.append("r = r.t().contiguous().t()")
    if weight is not None:
        lines.append(f"w = {_tensor(weight, wdt)}")
    if bias is not None:
        lines.append(f"b = {_tensor(bias, wdt)}")
    if candidate.style == "function":
        names = {"w": weight, "b": bias}  # passed by variable name
        kwargs = function_arguments(
            candidate.function_parameters,
            n,
            *(k if v is not None else None for k, v in names.items()),
            candidate.eps_override,
        )
        residual = next((k for k in RESIDUAL_NAMES if k in candidate.function_parameters), None)
        first = ["x"] if not fused else ["x", f"{residual}=r" if residual else "r"]
        args = [*first, *(f"{k}={v if isinstance(v, str) else repr(v)}" for k, v in kwargs.items())]
        lines.append(f"{out} = target({', '.join(args)})")
    else:
        to = candidate.param_dtype or wdt  # the weight's dtype: kept in float32 where the module refuses others
        lines.append(f"m = construct_module(target, {n}, {candidate.eps_override!r}).to(torch.{to})")
        if weight is not None or bias is not None:
            lines.append("with torch.no_grad():")
            if weight is not None:
                lines.append("    m.weight.copy_(w)")
            if bias is not None:
                lines.append("    m.bias.copy_(b)")
        lines.append(f"{out} = m(x, r)" if fused else "y = m(x)")
    fn = "rms_norm" if kind == "rmsnorm" else "layer_norm"
    params = "w.float().numpy()" if weight is not None else "None"
    if kind == "layernorm":
        params += ", b.float().numpy()" if bias is not None else ", None"
    wide = "float64" if dtype == "float64" else "float32"
    oracle = f"exact = oracles.{fn}({{}}, {params}, eps={eps!r}, weight_offset={offset})"
    if not fused:
        lines += [
            oracle.format(f"x.float().numpy().astype(np.{wide})"),
            f'print("max ulp error:", np.nanmax(exact.ulp_error(y.detach().float().numpy(), "{dtype}")))',
        ]
        return "\n".join(lines)
    # A fused residual-add may write into x and r: the oracle reads them first (y of the sum rounded to the dtype).
    call = lines.pop()
    lines += [
        f"total = oracles.residual_sum(x.float().numpy().astype(np.{wide}), r.float().numpy().astype(np.{wide}))",
        oracle.format(f'total.round("{dtype}")'),
        call,
        "y, res = out if isinstance(out, (tuple, list)) else (x, r)  # returned, or written in place",
        f'print("max ulp error of y:", np.nanmax(exact.ulp_error(y.detach().float().numpy(), "{dtype}")))',
        f'print("max ulp error of residual_out:", np.nanmax(total.ulp_error(res.detach().float().numpy(), "{dtype}")))',
    ]
    return "\n".join(lines)


def _array(a: np.ndarray) -> str:
    values, shape = _hex_values(a)
    dtype = "ml_dtypes.bfloat16" if str(a.dtype) == "bfloat16" else f"np.{a.dtype}"
    return f"np.array({values}, dtype={dtype}).reshape({shape})"


def array_snippet(
    spec: str,
    candidate: Candidate | IsolatedCandidate,
    kind: str,
    case: NormInput,
    dtype: str,
    eps: float,
    offset: int,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
) -> str:
    """The reproducer of a JAX or numpy target: the input as numpy arrays, the call through normcheck's
    candidate for the framework (module construction, parameters, ``jax.vjp``), and the error of y."""
    options = f"eps={candidate.eps_override!r}, param_dtype={candidate.param_dtype!r}"
    lines = [
        "import ml_dtypes, numpy as np, oracles",
        "from normcheck.frameworks import make_candidate",
        "from normcheck.loading import load_target",
        "h = float.fromhex",
        f'c = make_candidate(load_target("{spec}"), "{spec}", framework="{candidate.framework}", {options})',
        f"x = {_array(case.x)}",
        f"w = {_array(weight) if weight is not None else None}",
        f"b = {_array(bias) if bias is not None else None}",
        f"g = {_array(case.grad.astype(case.x.dtype))}" if candidate.supports_grad else "g = None",
        f"run = c.run(x, w, b, g, strided={case.strided})  # as the audit called it",
        'print("failure:", run.failure, run.error, "problems:", run.problems, "wrote into:", run.mutated)',
    ]
    call = f"oracles.rms_norm(x, w, eps={eps!r}" if kind == "rmsnorm" else f"oracles.layer_norm(x, w, b, eps={eps!r}"
    lines += [
        f"exact = {call}, weight_offset={offset})",
        "if run.y is not None:",
        f'    print("max ulp error of y:", np.nanmax(exact.ulp_error(run.y, "{dtype}")))',
    ]
    return "\n".join(lines)

"""A short runnable Python snippet that reproduces a finding.

Its inputs are exact hex floats in the snippet, or, for an input of more than
:data:`MAX_INLINE` elements, an ``.npz`` file of their bits that the snippet loads
(:func:`store`, :func:`load_inputs`): a 32768x16 input is 15 MB of hex floats.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from normcheck.errors import UsageError
from normcheck.options import REPRODUCER_DIR, InputLayout
from normcheck.quantization import Scheme, given_scale
from normcheck.strategies import NormInput
from normcheck.target.protocol import RESIDUAL_NAMES, function_arguments, scale_parameter
from normcheck.target.torch_target import Candidate
from normcheck.verdict.bounds import ulp
from oracles import Exact, resolve_format
from oracles.quantize import ELEMENT_FORMATS, BlockMax, quantize

if TYPE_CHECKING:
    from normcheck.target.isolation import IsolatedCandidate

#: Inputs with more elements than this go to an ``.npz`` file instead of the snippet.
MAX_INLINE = 4096
#: The gradients a finding can be about, and the oracle's gradient each is compared with.
GRADIENTS = {"dx": "dx", "dresidual": "dx", "dw": "dw", "db": "db"}


def bits(a: np.ndarray) -> np.ndarray:
    """The array's bit patterns as unsigned integers (NaN payloads and signed zeros included)."""
    return np.ascontiguousarray(a).view(np.dtype(f"u{a.dtype.itemsize}"))


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` of each array's bits and dtype name, its bytes set by the arrays alone
    (``np.savez`` stamps each entry with the time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, a in arrays.items():
            for key, value in ((name, bits(a)), (f"{name}.dtype", np.array(str(a.dtype)))):
                entry = zipfile.ZipInfo(f"{key}.npy")  # dated 1980-01-01
                entry.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(entry, "w") as fh:
                    np.lib.format.write_array(fh, value, allow_pickle=False)
    return buffer.getvalue()


def store(arrays: dict[str, np.ndarray], folder: str) -> dict[str, str]:
    """Write ``arrays`` bit for bit into ``folder`` (created if need be), atomically, as an ``.npz`` named
    by its checksum: it never replaces a different file. Returns its ``path`` and ``sha256``."""
    from normcheck.report.json_report import write_atomically  # (report_json imports the audit, which imports this)

    data = _npz(arrays)
    sha256 = hashlib.sha256(data).hexdigest()
    path = Path(folder).resolve() / f"reproducer-{sha256[:16]}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(str(path), data)
    return {"path": str(path), "sha256": sha256}


def load_inputs(path: str, sha256: str) -> dict[str, np.ndarray]:
    """The arrays :func:`store` wrote, in their own dtypes, bit for bit; refuses a file of another checksum."""
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{path} is not the file this reproducer was written with: its sha256 differs")
    with np.load(io.BytesIO(data)) as npz:
        dtypes = {k: resolve_format(str(npz[f"{k}.dtype"])).dtype for k in npz.files if not k.endswith(".dtype")}
        return {k: npz[k].view(dtype) for k, dtype in dtypes.items()}


def file_note(file: dict[str, str] | None) -> str | None:
    """The line that names a reproducer's input file, or None where its inputs are in the snippet."""
    return None if file is None else f"input in {file['path']} (sha256 {file['sha256']})"


def show_error(name: str, exact: Exact, got: np.ndarray, dtype: str) -> None:
    """Print a reproducer's verdict on one output: its largest ULP error, and how many of its elements are
    NaN or infinite where the exact value rounds to a finite one (the ULP error leaves those out)."""
    err = exact.ulp_error(got, dtype)
    finite = err[np.isfinite(err)]
    wrong = ~np.isfinite(got.astype(np.float64)) & np.isfinite(exact.round(dtype).astype(np.float64))
    largest = float(finite.max()) if finite.size else float("nan")
    print(
        f"max ulp error of {name}: {largest:.6g} ({int(wrong.sum())} of {got.size} elements non-finite "
        "where the exact value is finite)"
    )


def show_quantized(exact: Exact, q: np.ndarray, scales: object, element: str, block: int | None = None) -> None:
    """Print a reproducer's verdict on a quantized norm: how many values differ from the exact ``y`` over the
    scales it used, correctly rounded (and by how many steps at most), and for returned scales their largest
    distance from the exact ``amax / largest`` of their blocks (of ``block`` channels, the last one shorter where
    it does not divide the hidden size; None: the blocks divide it), relative."""
    fmt = ELEMENT_FORMATS[element]
    s = np.asarray(scales, dtype=np.float64)
    rounded = quantize(exact, s, fmt, block=block)
    got = q.astype(np.float64)
    with np.errstate(all="ignore"):
        steps = np.abs(got - rounded) / ulp(rounded, fmt)
    differ = got != rounded
    largest = float(np.nanmax(np.where(differ, steps, 0.0), initial=0.0))
    nonfinite = int((~np.isfinite(got) & np.isfinite(rounded)).sum())
    print(
        f"q: {int(differ.sum())} of {q.size} values differ from the rounded y/scale (at most {largest:.3g} steps "
        f"among the finite ones; {nonfinite} not finite)"
    )
    if s.ndim:
        amax = BlockMax(exact, block or exact.shape[-1] // s.shape[-1])
        with np.errstate(all="ignore"):
            rel = np.abs(s - (amax.lo + amax.hi) / 2 / float(fmt.max_finite)) / s
        top = float(fmt.max_finite)
        print(f"scales: at most {float(np.nanmax(rel, initial=0.0)):.3g} relative from amax / {top:g}")


def _array(a: np.ndarray) -> str:
    """``a`` as numpy code of exact hex floats (``h = float.fromhex`` in the snippet)."""
    values = ", ".join(f'h("{float(v).hex()}")' for v in np.asarray(a, dtype=np.float64).ravel())
    dtype = "ml_dtypes.bfloat16" if str(a.dtype) == "bfloat16" else f"np.{a.dtype}"
    return f"np.array([{values}], dtype={dtype}).reshape({', '.join(str(d) for d in a.shape)})"


def _inputs(arrays: dict[str, np.ndarray], folder: str) -> tuple[list[str], dict[str, str] | None]:
    """The lines that define the snippet's ``inputs`` (a dict of numpy arrays), and the file they load:
    hex floats, or past :data:`MAX_INLINE` elements the ``.npz`` written into ``folder`` for them
    (hex floats after all, saying why, where it cannot be written)."""
    inline = ["h = float.fromhex", "inputs = {", *(f'    "{k}": {_array(a)},' for k, a in arrays.items()), "}"]
    if arrays["x"].size <= MAX_INLINE:
        return inline, None
    try:
        file = store(arrays, folder)
    except (OSError, UsageError) as exc:
        return [f"# the inputs are inline: they could not be written into {folder!r} ({exc})", *inline], None
    return [f"inputs = load_inputs({file['path']!r}, {file['sha256']!r})  # {arrays['x'].size} values of x"], file


def _oracle(kind: str, arrays: dict[str, np.ndarray], dtype: str, eps: float, offset: int, grad: bool) -> list[str]:
    """Lines that compute the exact outputs on ``inputs``: ``exact`` (y), for a fused residual-add ``total``
    (x + residual, whose rounding to the dtype the norm normalizes), with ``grad`` also ``grads`` (dx, dw, db)."""
    lines, x = [], 'inputs["x"]'
    if "r" in arrays:
        lines += ['total = oracles.residual_sum(inputs["x"], inputs["r"])', f's = total.round("{dtype}")']
        x = "s"
    params = [f'inputs["{k}"]' if k in arrays else "None" for k in ("w", "b")[: 1 if kind == "rmsnorm" else 2]]
    fn = "rms_norm" if kind == "rmsnorm" else "layer_norm"
    options = f"eps={eps!r}, weight_offset={offset}"
    lines.append(f"exact = oracles.{fn}({x}, {', '.join(params)}, {options})")
    if grad:
        args = ", ".join([x, 'inputs["g"]', *params])
        lines.append(f'grads = dict(zip(("dx", "dw", "db"), oracles.{fn}_backward({args}, {options})))')
    return lines


def _format(output: str, arrays: dict[str, np.ndarray], dtype: str) -> str:
    """The dtype ``output`` comes in: the parameters' for dw and db, else the input's."""
    return str(arrays["w" if output == "dw" else "b"].dtype) if output in ("dw", "db") else dtype


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
    *,
    output: str | None = None,
    folder: str = REPRODUCER_DIR,
) -> tuple[str, dict[str, str] | None]:
    """Code that rebuilds the input, calls the implementation as the audit did and prints the error of y and
    of ``output`` (the finding's: a gradient runs backward with the audit's upstream gradient), and the
    ``path`` and ``sha256`` of the file it loads a large input from (written into ``folder``), or None.

    It runs in a fresh process (``python -c``), so it reproduces crashes and hangs too.
    JAX and numpy targets are called through normcheck's candidate for their framework,
    which builds and calls them exactly as the audit did (:func:`_array_lines`).
    """
    torch = candidate.framework == "torch"
    grad = output in GRADIENTS if torch else candidate.supports_grad  # as the audit called it
    named = {"x": case.x, "r": case.residual, "w": weight, "b": bias, "g": case.grad if grad else None}
    arrays = {k: a for k, a in named.items() if a is not None}
    inputs, file = _inputs(arrays, folder)
    build = _torch_lines if torch else _array_lines
    return "\n".join(build(spec, candidate, kind, case, dtype, eps, offset, arrays, inputs, output)), file


def _torch_lines(
    spec: str,
    candidate: Candidate | IsolatedCandidate,
    kind: str,
    case: NormInput,
    dtype: str,
    eps: float,
    offset: int,
    arrays: dict[str, np.ndarray],
    inputs: list[str],
    output: str | None,
) -> list[str]:
    """The reproducer of a torch target: its own code, as a user would write it."""
    fused, weight, bias = "r" in arrays, "w" in arrays, "b" in arrays
    grad = output in GRADIENTS
    layout = candidate.layout
    x_in = "x" if layout == InputLayout.LAST else f'to_layout(x, "{layout}")'

    def rows(call: str) -> str:
        """A call's output as rows again, where the input went in channels first."""
        return call if layout == InputLayout.LAST else f'from_layout({call}, tuple(x.shape), "{layout}")'

    lines = [
        "import ml_dtypes, numpy as np, torch, oracles",
        "from normcheck.target.loading import construct_module, load_target",
        "from normcheck.report.reproducer import load_inputs, show_error"
        + (", show_quantized" if candidate.scheme is not None else ""),
        "from normcheck.target.torch_bridge import from_numpy, to_numpy",
        *_quantized_imports(candidate.scheme),
        *(["from normcheck.target.layouts import from_layout, to_layout"] if layout != InputLayout.LAST else []),
        *inputs,
        f'target = load_target("{spec}")',
        *(f'{k} = from_numpy(inputs["{k}"])' for k in ("x", "r", "w", "b") if k in arrays),
    ]
    if case.strided:
        lines.append("x = x.t().contiguous().t()  # the audit passed a non-contiguous (transposed) view")
        if fused:
            lines.append("r = r.t().contiguous().t()")
    if grad:  # the gradients land in the inputs' .grad (a function's parameters', too)
        leaves = ["x", "r"] if fused else ["x"]
        if candidate.style == "function":
            leaves += [k for k in ("w", "b") if k in arrays]
        lines.append("; ".join(f"{k}.requires_grad_()" for k in leaves))
    scheme = candidate.scheme
    out = "out" if fused else "y" if scheme is None else "q" if scheme.static else "q, scales"
    scale = _given_scale(candidate, case, arrays, eps)
    if scale is not None:
        what = "global" if scheme is not None and scheme.global_scale else "static"
        lines.append(f"scale = torch.tensor({scale!r}, dtype=torch.float32)  # the {what} scale the audit chose")
    if candidate.style == "function":
        kwargs = function_arguments(  # the parameters passed by variable name
            candidate.function_parameters,
            case.n,
            "w" if weight else None,
            "b" if bias else None,
            candidate.eps_override,
        )
        residual = next((k for k in RESIDUAL_NAMES if k in candidate.function_parameters), None)
        first = [x_in] if not fused else ["x", f"{residual}=r" if residual else "r"]
        args = [*first, *(f"{k}={v if isinstance(v, str) else repr(v)}" for k, v in kwargs.items())]
        if scale is not None:
            name = scale_parameter(candidate.function_parameters)
            args.append(f"{name}=scale" if name else "scale")
        call = f"target({', '.join(args)})"
        lines.append(f"{out} = {rows(call)}")
        params = {"w": "w", "b": "b"}
    else:
        # The weight's dtype: kept in float32 where the module refuses others.
        to = candidate.param_dtype or (str(arrays["w"].dtype) if weight else dtype)
        lines.append(f"m = construct_module(target, {case.n}, {candidate.eps_override!r}).to(torch.{to})")
        if weight or bias:
            lines.append("with torch.no_grad():")
            lines += [f"    m.{name}.copy_({k})" for k, name in (("w", "weight"), ("b", "bias")) if k in arrays]
        given = ", scale" if scale is not None else ""
        lines.append(f"{out} = m(x, r{given})" if fused else f"{out} = {rows(f'm({x_in}{given})')}")
        params = {"w": "m.weight", "b": "m.bias"}
    if fused and scheme is None:
        lines.append("y, res = out if isinstance(out, (tuple, list)) else (x, r)  # returned, or written in place")
    elif fused and scheme is not None and scheme.static:
        lines.append("q, res = out if isinstance(out, (tuple, list)) else (out, r)  # residual returned, or in place")
    elif fused:
        lines.append("q, scales, res = out if len(out) == 3 else (*out, r)  # residual returned, or in place")
    lines += _oracle(kind, arrays, dtype, eps, offset, grad)
    if scheme is not None:
        used = "scale.item()" if scheme.static else "to_numpy(scales.float())"
        if scheme.global_scale:  # NVFP4's scales (E4M3, or their bytes; maybe swizzled) row by row, over g
            lines.append(
                'scales, _ = rowwise_scales(to_numpy(scales), str(scales.dtype).removeprefix("torch."), '
                f'tuple(x.shape), scheme("{scheme.name}", "{scheme.scaling}"))'
            )
            used = "scales.astype(np.float64) / scale.item()"  # y is divided by the block scale over the global one
        # (two FP4 elements a byte)
        values = "unpack_fp4(q.view(torch.uint8).numpy())" if scheme.packed else "to_numpy(q)"
        lines.append(f'show_quantized(exact, {values}, {used}, "{scheme.element.name}"{_block_argument(scheme, case)})')
    else:
        lines.append(f'show_error("y", exact, to_numpy(y), "{dtype}")')
    if fused:
        lines.append(f'show_error("residual_out", total, to_numpy(res), "{dtype}")')
    if scheme is not None:
        return lines
    if grad and output is not None:  # (output is a gradient's name)
        tensor = {"dx": "x", "dresidual": "r", "dw": params["w"], "db": params["b"]}[output]
        lines += [
            'y.backward(from_numpy(inputs["g"]).to(y.dtype).reshape(y.shape))  # the audit\'s upstream gradient',
            f'show_error("{output}", grads["{GRADIENTS[output]}"], to_numpy({tensor}.grad), '
            f'"{_format(output, arrays, dtype)}")',
        ]
    return lines


def _given_scale(
    candidate: Candidate | IsolatedCandidate, case: NormInput, arrays: dict[str, np.ndarray], eps: float
) -> float | None:
    """The scale the audit called a quantized norm with on ``case``, static or NVFP4's global (None for any
    other)."""
    scale = None if candidate.scheme is None else given_scale(case.x, arrays.get("w"), eps, candidate.scheme)
    return None if scale is None else float(scale)


def _quantized_imports(scheme: Scheme | None) -> list[str]:
    """The imports a torch reproducer of ``scheme`` needs: FP4's unpacking, NVFP4's scales read row by row."""
    if scheme is None or not scheme.packed:
        return []
    if not scheme.global_scale:
        return ["from normcheck.target.quantized_outputs import unpack_fp4"]
    return [
        "from normcheck.quantization import scheme",
        "from normcheck.target.quantized_outputs import rowwise_scales, unpack_fp4",
    ]


def _block_argument(scheme: Scheme, case: NormInput) -> str:
    """``show_quantized``'s block argument where the scheme's blocks do not divide the hidden size, else none."""
    block = scheme.block_size(case.n)
    return f", block={block}" if block and case.n % block else ""


def _array_lines(
    spec: str,
    candidate: Candidate | IsolatedCandidate,
    kind: str,
    case: NormInput,
    dtype: str,
    eps: float,
    offset: int,
    arrays: dict[str, np.ndarray],
    inputs: list[str],
    output: str | None,
) -> list[str]:
    """The reproducer of a JAX or numpy target: the call through normcheck's candidate for the framework
    (module construction, parameters, ``jax.vjp``)."""
    scheme = candidate.scheme
    quant = "" if scheme is None else f', quant="{scheme.name}", scaling="{scheme.scaling}"'
    options = (
        f'AuditOptions(framework="{candidate.framework}", eps={candidate.eps_override!r}, '
        f"param_dtype={candidate.param_dtype!r}{quant})"
    )
    args = ", ".join(f'inputs["{k}"]' if k in arrays else "None" for k in ("x", "w", "b", "g"))
    lines = [
        "import ml_dtypes, numpy as np, oracles",
        "from normcheck.options import AuditOptions",
        "from normcheck.target.registry import make_candidate",
        "from normcheck.target.loading import load_target",
        "from normcheck.report.reproducer import load_inputs, show_error" + (", show_quantized" if scheme else ""),
        *inputs,
        f'c = make_candidate(load_target("{spec}"), "{spec}", {options})',
        f"run = c.run({args}, strided={case.strided})  # as the audit called it",
        'print("failure:", run.failure, run.error, "problems:", run.problems, "wrote into:", run.mutated)',
        *_oracle(kind, arrays, dtype, eps, offset, output in GRADIENTS),
        "if run.y is not None:",
    ]
    if scheme is not None:  # the values over the scales they were computed with
        used = "run.given_scale" if scheme.static else "run.scales"
        if scheme.global_scale:
            used += " / run.given_scale"  # NVFP4: y is divided by the block scale over the global one
        block = _block_argument(scheme, case)
        return [*lines, f'    show_quantized(exact, run.y, {used}, "{scheme.element.name}"{block})']
    lines.append(f'    show_error("y", exact, run.y, "{dtype}")')
    if output in GRADIENTS:
        lines += [
            f"if run.{output} is not None:",
            f'    show_error("{output}", grads["{GRADIENTS[output]}"], run.{output}, '
            f'"{_format(output, arrays, dtype)}")',
        ]
    return lines

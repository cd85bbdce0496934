"""Audit from Python: ``audit(impl, ...)`` and ``assert_matches_oracle(impl, ...)``.

Both call the same engine as ``normcheck audit``; the assertion raises
``AssertionError`` with what failed, the ULP figures, the bound, the named bug
and the reproducer, for use from any test framework.
"""

from __future__ import annotations

from contextlib import closing

from normcheck.engine.auditor import Auditor
from normcheck.notes import smallest_input_note
from normcheck.report.reproducer import REPRODUCER_DIR, file_note
from normcheck.result import AuditResult
from normcheck.target.inference import infer
from normcheck.target.isolation import open_candidate


def audit(
    impl: object,
    *,
    kind: str | None = None,
    dtype: str | tuple[str, ...] = ("float16", "bfloat16", "float32"),
    device: str = "cpu",
    eps: float | None = None,
    weight_offset: int | None = None,
    examples: int = 100,
    seed: int = 0,
    grad: bool = True,
    hidden_sizes: tuple[int, ...] = (),
    shapes: tuple[tuple[int, ...], ...] = (),
    timeout: float = 20.0,
    in_process: bool = False,
    compile: str | None = None,
    residual: bool = False,
    style: str = "auto",
    framework: str | None = None,
    param_dtype: str | None = None,
    reproducer_dir: str = REPRODUCER_DIR,
) -> AuditResult:
    """Audit an implementation (a class, factory, function, or a ``"pkg.mod:Name"`` string).

    The implementation runs in a worker process (a crash or a hang is a finding);
    ``in_process=True`` runs it here instead, for a debugger. ``shapes`` adds inputs
    of exactly those shapes; ``compile`` names a torch.compile backend to audit under
    (JAX: any name means ``jax.jit``). ``framework`` is ``torch``, ``jax`` or ``numpy``
    (detected when None: jax for Flax modules and jax functions, else torch);
    ``param_dtype`` keeps the parameters in that dtype instead of the audited one.
    ``residual`` audits a fused residual-add + norm (torch targets), ``style`` forcing how it answers
    (``"return"``: ``(y, residual_out)``; ``"inplace"``; ``"auto"``: found on the first call).
    A reproducer of an input of more than ``MAX_INLINE`` values loads it from a file in ``reproducer_dir``.
    """
    spec = (
        impl if isinstance(impl, str) else f"{getattr(impl, '__module__', '?')}:{getattr(impl, '__qualname__', impl)}"
    )
    options = {"device": device, "eps": eps, "timeout": timeout, "compile": compile, "param_dtype": param_dtype}
    options["fused"] = style if residual else None  # a fused residual-add's style, or None: a plain norm
    handle = open_candidate(impl, spec, in_process=in_process, framework=framework, **options)  # type: ignore[arg-type]
    with closing(handle) as c:
        kind, offset = infer(c, kind, weight_offset)
        dtypes = (dtype,) if isinstance(dtype, str) else tuple(dtype)
        return Auditor(
            c,
            spec=spec,
            kind=kind,
            weight_offset=offset,
            dtypes=dtypes,
            hidden_sizes=hidden_sizes,
            shapes=shapes,
            examples=examples,
            seed=seed,
            grad=grad,
            reproducer_dir=reproducer_dir,
        ).run()


def describe_failure(result: AuditResult) -> str:
    """A pytest-style explanation of every finding: what, where, how far, the bound, the bug, the reproducer."""
    lines = [
        f"normcheck: {result.target} ({result.kind}, {', '.join(result.dtypes)}, {result.device}) "
        f"failed {len(result.findings)} check(s) against the exact oracle:"
    ]
    for f in result.findings:
        where = f" of {f.output}" if f.output else ""
        lines.append(f"- {f.check}{where} in {f.dtype} ({f.regime} rows): {f.message}")
        note = smallest_input_note(f.minimal)
        if note:
            lines.append(f"  {note}")
        if f.output and (f.dtype, f.output) in result.bound_reasons:
            reasons = result.bound_reasons[(f.dtype, f.output)]
            lines.append(f"  sharp bound: {reasons['sharp']}")
            lines.append(f"  rigorous bound: {reasons['rigorous']}")
        if f.diagnosis is not None:
            lines.append(f"  bug: {f.diagnosis.bug or 'unrecognized'}: {f.diagnosis.evidence}")
        if f.reproducer:
            note = file_note(f.reproducer_file)
            lines.append(f"  reproducer, {note}:" if note else "  reproducer:")
            lines += [f"    {line}" for line in f.reproducer.splitlines()]
    return "\n".join(lines)


def assert_matches_oracle(impl: object, **options: object) -> AuditResult:
    """Audit ``impl`` (options as :func:`audit`) and raise ``AssertionError`` on any finding."""
    __tracebackhide__ = True
    result = audit(impl, **options)  # type: ignore[arg-type]
    if not result.passed:
        raise AssertionError(describe_failure(result))
    return result

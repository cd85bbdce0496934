"""Audit from Python: ``audit(impl, ...)`` and ``assert_matches_oracle(impl, ...)``.

Both call the same engine as ``normcheck audit``; the assertion raises
``AssertionError`` with what failed, the ULP figures, the bound, the named bug
and the reproducer, for use from any test framework.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager

from normcheck.engine.auditor import Auditor
from normcheck.notes import smallest_input_note
from normcheck.options import AuditOptions
from normcheck.report.reproducer import file_note
from normcheck.result import AuditResult
from normcheck.target.inference import infer
from normcheck.target.isolation import open_candidate


def target_name(impl: object) -> str:
    """How reports name ``impl``: its spec string, or ``module:qualname``."""
    if isinstance(impl, str):
        return impl
    return f"{getattr(impl, '__module__', '?')}:{getattr(impl, '__qualname__', impl)}"


@contextmanager
def open_audit(impl: object, options: AuditOptions) -> Iterator[Auditor]:
    """An :class:`Auditor` for ``impl``, its kind and weight offset inferred where ``options`` leave them
    unset (usage errors surface here, before the audit starts); the implementation's handle (a worker
    process, unless ``options.in_process``) is closed on leaving."""
    spec = target_name(impl)
    with closing(open_candidate(impl, spec, options)) as candidate:
        kind, offset = infer(candidate, options.kind, options.weight_offset, options.scheme)
        yield Auditor(candidate, spec=spec, kind=kind, weight_offset=offset, options=options)


def audit(impl: object, options: AuditOptions | None = None, **keywords: object) -> AuditResult:
    """Audit an implementation (a class, factory, function, or a ``"pkg.mod:Name"`` string).

    ``options`` (default :class:`AuditOptions`), with ``keywords`` replacing its fields: ``kind``,
    ``dtype`` (one or several), ``device``, ``eps``, ``examples``, ``seed``, ``grad``, ``residual``, ...
    The implementation runs in a worker process (a crash or a hang is a finding);
    ``in_process=True`` runs it here instead, for a debugger.
    A reproducer of an input of more than ``MAX_INLINE`` values loads it from a file in ``reproducer_dir``.
    """
    with open_audit(impl, (options or AuditOptions()).updated(**keywords)) as auditor:
        return auditor.run()


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


def assert_matches_oracle(impl: object, options: AuditOptions | None = None, **keywords: object) -> AuditResult:
    """Audit ``impl`` (options as :func:`audit`) and raise ``AssertionError`` on any finding."""
    __tracebackhide__ = True
    result = audit(impl, options, **keywords)
    if not result.passed:
        raise AssertionError(describe_failure(result))
    return result

"""One default audit per distinct implementation, ``jobs`` at a time, each in a process of its own (whose
implementation runs in a worker process of its own, as in ``normcheck audit``)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from normcheck.errors import UsageError
from normcheck.options import AuditOptions, InputLayout
from normcheck.scan.reasons import AUDITED, ERROR, NOT_AUDITED, OTHER_LAYOUT, reason_class


def audit_record(spec: str, options: AuditOptions) -> dict:
    """Audit ``spec``: ``{"status": "audited", "report": ...}``; what normcheck cannot call is
    ``"not audited"`` with the reason; normcheck's own failure is ``"error"`` (a bug of normcheck's).
    A norm that rows do not fit is tried channels first (``nchw``, then ``ncl``) before it is given up."""
    record = _audit(spec, options)
    if record["status"] != NOT_AUDITED or options.layout != InputLayout.LAST:
        return record
    if reason_class(record["reason"]) not in OTHER_LAYOUT:
        return record
    for layout in (InputLayout.NCHW, InputLayout.NCL):
        tried = _audit(spec, replace(options, layout=layout))
        if tried["status"] != NOT_AUDITED:
            return tried
    return record


def _audit(spec: str, options: AuditOptions) -> dict:
    from normcheck.api import open_audit
    from normcheck.report.json_report import to_dict

    try:
        with open_audit(spec, options) as auditor:
            result = auditor.run()
            framework = auditor.caller.c.framework
    except UsageError as exc:
        return {"status": NOT_AUDITED, "reason": str(exc)}
    except Exception as exc:
        return {"status": ERROR, "reason": f"{type(exc).__name__}: {exc}"}
    return {"status": AUDITED, "report": to_dict(result, options.settings(framework))}


def run_audits(
    specs: Sequence[str],
    options: AuditOptions,
    jobs: int,
    done: Callable[[str, dict], None],
    running: Callable[[list[str]], None] = lambda _names: None,
) -> None:
    """Audit every spec, at most ``jobs`` at once; ``done(spec, record)`` as each finishes (in the order they
    finish), ``running(specs)`` whenever the set of running audits changes."""
    pending = list(specs)
    context = multiprocessing.get_context("spawn")  # (fork would copy this process's imported package and torch)
    while pending:
        pool = ProcessPoolExecutor(max_workers=max(1, min(jobs, len(pending))), mp_context=context)
        try:
            _drain(pool, pending, options, jobs, done, running)
        except BaseException:  # interrupted: stop what runs (a killed scan resumes from the cache)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()


def _drain(
    pool: ProcessPoolExecutor,
    pending: list[str],
    options: AuditOptions,
    jobs: int,
    done: Callable[[str, dict], None],
    running: Callable[[list[str]], None],
) -> None:
    """Run ``pending`` (emptied as audits start) through ``pool`` until done or until the pool breaks (an
    audit's process died: the audits in flight in it are errors, the rest go on in a new pool)."""
    futures: dict[Future, str] = {}
    while pending or futures:
        while pending and len(futures) < jobs:
            spec = pending.pop(0)
            futures[pool.submit(audit_record, spec, options)] = spec
        running(list(futures.values()))
        finished, _ = wait(futures, return_when=FIRST_COMPLETED)
        broken = False
        for future in finished:
            spec = futures.pop(future)
            try:
                record = future.result()
            except BrokenProcessPool as exc:
                record, broken = {"status": ERROR, "reason": f"the audit's process died: {exc}"}, True
            done(spec, record)
        if broken:
            for spec in futures.values():
                done(spec, {"status": ERROR, "reason": "the audit's process died (another audit in the same pool)"})
            return

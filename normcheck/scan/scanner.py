"""``scan``: discover, group, audit what the cache does not hold, summarize."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from normcheck.options import AuditOptions
from normcheck.report.json_report import environment
from normcheck.scan.cache import Cache, chosen_options, default_folder, key, versions
from normcheck.scan.discover import NAME_PATTERN, discover
from normcheck.scan.fingerprint import fingerprint
from normcheck.scan.reasons import ERROR, NOT_AUDITED
from normcheck.scan.runner import run_audits
from normcheck.scan.summary import row, summary


@dataclass
class Progress:
    """What a scan reports as it goes: audits to run, finished, and running now."""

    total: int = 0
    finished: int = 0
    running: tuple[str, ...] = ()


def scan(
    target: str,
    options: AuditOptions,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    names: str = NAME_PATTERN,
    jobs: int = 1,
    cache: str | Path | None = None,
    reproducers: str | Path | None = None,
    progress: Callable[[Progress], None] = lambda _p: None,
) -> dict:
    """Scan ``target`` (a package or module): every norm found, grouped by code, each group audited once with
    ``options`` (``jobs`` at a time) unless ``cache`` (default: :func:`default_folder`) holds its audit.
    The large inputs of new findings' reproducers go to ``reproducers`` (default: ``reproducers`` in the cache).
    Returns the summary (:mod:`normcheck.scan.summary`)."""
    start = time.perf_counter()
    store = Cache(cache if cache is not None else default_folder())
    folder = reproducers if reproducers is not None else store.folder / "reproducers"
    options = replace(options, reproducer_dir=str(folder))
    found = discover(target, include, exclude, names)
    groups: dict[str, list[str]] = {}
    problems: dict[str, str] = {}
    for f in found.found:
        code = fingerprint(f.obj) if f.problem is None else f"unloaded {f.spec}"
        groups.setdefault(code, []).append(f.spec)
        if f.problem is not None:
            problems[code] = f.problem
    stated = versions(found.version)
    rows: list[dict] = []
    todo: dict[str, tuple[list[str], str, str]] = {}
    for code, specs in groups.items():
        specs.sort()
        entry = key(code, stated, options)
        if code in problems:
            rows.append(row(specs, code, {"status": NOT_AUDITED, "reason": problems[code]}, cached=False))
        elif (record := store.get(entry)) is not None:
            rows.append(row(specs, code, record, cached=True))
        else:
            todo[specs[0]] = (specs, code, entry)
    state = Progress(total=len(todo))
    progress(state)

    def done(spec: str, record: dict) -> None:
        specs, code, entry = todo[spec]
        if record["status"] != ERROR:  # (normcheck's own failure is not kept: a rerun tries again)
            store.put(entry, record)
        rows.append(row(specs, code, record, cached=False))
        state.finished += 1
        progress(state)

    def running(specs: list[str]) -> None:
        state.running = tuple(specs)
        progress(state)

    run_audits(list(todo), options, jobs, done, running)
    return summary(
        target,
        found.version,
        list(include),
        list(exclude),
        chosen_options(options),
        stated,
        environment(options.device),
        rows,
        [{"module": u.module, "reason": u.reason} for u in found.unimportable],
        time.perf_counter() - start,
    )

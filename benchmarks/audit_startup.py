"""Where a command-line audit's wall time goes before and after the audit's own clock.

    python benchmarks/audit_startup.py [TARGET]          (default torch.nn.RMSNorm)

Runs ``normcheck audit TARGET --json FILE`` in this process with the default settings (a worker process)
and prints, in seconds from the start of this script: normcheck's CLI imported, the engine and torch
imported in the auditor, the oracles' compiled kernels loaded, the kind inferred (the worker's first
answer), the audit started and ended, and the exit of the command.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

START = time.perf_counter()

import normcheck.cli as cli  # noqa: E402  (timed: the import is part of the start)

IMPORTED = time.perf_counter()

import normcheck.api as api  # noqa: E402
import normcheck.target.isolation as isolation  # noqa: E402
import oracles.warmup as warmup  # noqa: E402
from normcheck.engine.auditor import Auditor  # noqa: E402

MARKS: dict[str, float] = {"normcheck.cli imported": IMPORTED}


def timed(owner: object, name: str, label: str) -> None:
    """Record when ``owner.name`` returns, as ``label``."""
    original: Callable = getattr(owner, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        result = original(*args, **kwargs)
        MARKS[label] = time.perf_counter()
        return result

    setattr(owner, name, wrapper)


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else "torch.nn.RMSNorm"
    timed(isolation, "require_torch", "the engine and torch imported in the auditor")
    timed(warmup, "warm_up", "the oracles' kernels loaded")
    timed(api, "infer", "the kind inferred (the worker answered)")
    run = Auditor.run

    def audit(self: Auditor) -> object:
        MARKS["the audit started"] = time.perf_counter()
        result = run(self)
        MARKS["the audit ended"] = time.perf_counter()
        return result

    Auditor.run = audit  # type: ignore[method-assign]  # timed
    with tempfile.TemporaryDirectory() as tmp:
        code = cli.main(["audit", target, "--json", str(Path(tmp) / "audit.json")])
    MARKS["the command returned"] = time.perf_counter()
    print(f"{target}: exit {code}", file=sys.stderr)
    for label, when in sorted(MARKS.items(), key=lambda item: item[1]):
        print(f"{when - START:6.2f} s  {label}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""What changed in the regenerated reports: each reports/json/*.json against a git revision's copy.

    python benchmarks/report_diff.py [--rev HEAD] [--ignore KEY ...]

Prints every differing value by its path (``stats[3].max``), leaving out the fields that change from
run to run (timing, seconds, environment: versions and machine; a too-slow input's predicted
seconds); exits 1 if anything else differs.
Run from the repository root after ``python reports/generate.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

#: Top-level fields that differ between any two runs.
VOLATILE = ("timing", "seconds", "environment")
#: Fields anywhere that are measured times: a too-slow input's predicted seconds.
TIMES = ("predicted_s",)


def differences(old: object, new: object, path: str = "") -> Iterator[str]:
    """``path: old -> new`` for every leaf that differs (a missing key reads as <absent>)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted((set(old) | set(new)) - set(TIMES), key=str):
            if key not in old or key not in new:
                yield f"{path}.{key}: {old.get(key, '<absent>')!r:.60} -> {new.get(key, '<absent>')!r:.60}"
            else:
                yield from differences(old[key], new[key], f"{path}.{key}")
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            yield from differences(a, b, f"{path}[{i}]")
    elif old != new and not (old != old and new != new):  # NaN is NaN
        yield f"{path}: {old!r:.60} -> {new!r:.60}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="the git revision to compare with (default HEAD)")
    parser.add_argument("--ignore", action="append", default=[], help="a top-level field to leave out, too")
    args = parser.parse_args()
    ignored = (*VOLATILE, *args.ignore)
    changed = 0
    for path in sorted(Path("reports/json").glob("*.json")):
        shown = subprocess.run(["git", "show", f"{args.rev}:{path}"], capture_output=True, text=True)
        if shown.returncode != 0:
            print(f"{path}: new (not in {args.rev})")
            continue
        old, new = (
            {k: v for k, v in json.loads(text).items() if k not in ignored} for text in (shown.stdout, path.read_text())
        )
        lines = list(differences(old, new))
        changed += bool(lines)
        print(f"{path}: {'same' if not lines else f'{len(lines)} differences'}")
        for line in lines[:40]:
            print(f"    {line}")
    print(f"{changed} report(s) differ beyond {', '.join(ignored)}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())

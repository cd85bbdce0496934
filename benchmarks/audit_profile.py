"""Where a default audit's time goes: cProfile over the command as a user runs it.

    python benchmarks/audit_profile.py [TARGET] [--top 25] [--out FILE]

Runs ``python -m cProfile -m normcheck audit TARGET --in-process --json ...`` (in process, so the
implementation's calls are in the same profile as the auditor's), then prints the report's own split
of its time (``timing``), the wall time, and the top entries by cumulative and by own time, with
paths shortened to the package. ``--out`` writes the same text to a file as well (the committed
profiles in benchmarks/profiles/ come from it). Target (issue: speed): the default audit of
torch.nn.RMSNorm in a few seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import pstats
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def profile(target: str, top: int) -> str:
    """The profile of one in-process command-line audit of ``target``, as text."""
    with tempfile.TemporaryDirectory() as tmp:
        stats_file, report = Path(tmp) / "audit.prof", Path(tmp) / "audit.json"
        command = [sys.executable, "-m", "cProfile", "-o", str(stats_file), "-m", "normcheck", "audit", target]
        start = time.perf_counter()
        subprocess.run(
            [*command, "--in-process", "--json", str(report)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        data = json.loads(report.read_text())
        out = io.StringIO()
        stats = pstats.Stats(str(stats_file), stream=out)
        for order in ("cumulative", "tottime"):
            out.write(f"\n-- top {top} by {order} --\n")
            stats.sort_stats(order).print_stats(top)
    timing = ", ".join(f"{k} {v:.2f} s" for k, v in data["timing"].items())
    head = (
        f"{target}: {data['verdict']}, {data['cases']} inputs; wall {wall:.1f} s under cProfile, "
        f"the report's seconds {data['seconds']:.2f} ({timing})\n"
    )
    return head + _short_paths(out.getvalue())


def _short_paths(text: str) -> str:
    """Paths cut to what follows site-packages/ or the repository root (the lines stay readable)."""
    root = re.escape(str(Path(__file__).resolve().parents[1]) + "/")
    text = re.sub(root, "", text)
    return re.sub(r"\S*/site-packages/", "", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", default="torch.nn.RMSNorm")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, help="also write the profile into this file")
    args = parser.parse_args()
    text = profile(args.target, args.top)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()

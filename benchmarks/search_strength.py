"""How much the search finds on its own: every bug class of the test zoo, the plan's inputs left out.

    python benchmarks/search_strength.py [--seeds 2] [--examples N] [--elementwise N] [--json F] [--compare F]

The structured cases catch and name every bug class by themselves (tests/normcheck/test_audit_zoo.py),
so a weaker search would pass every test. Here each bug class is audited in-process with the search
alone (an auditor whose ``structured_inputs`` judge nothing), per seed, and the figure is which
(dtype, output) pairs have a finding. A change to how the search draws its inputs (the speed issue's
lever: hypothesis' draws are about a quarter of a default audit) must not find fewer.

``--elementwise N`` sets ``normcheck.strategies.ELEMENTWISE`` (values drawn one by one up to N per
array, above it from a drawn seed); ``--json F`` writes the pairs found; ``--compare F`` prints, per
class and seed, what this run found that F's did not (+) and what it missed (-), and exits 1 if it missed
anything. It first times hypothesis drawing a default audit's search inputs alone. Run from the
repository root.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, ".")  # the test zoo lives in tests/

from normcheck import strategies
from normcheck.engine.auditor import Auditor
from normcheck.engine.search import search
from normcheck.options import DEFAULT_DTYPES, AuditOptions
from normcheck.result import Finding
from normcheck.strategies import NormInput, norm_inputs
from normcheck.target.loading import load_target
from normcheck.target.protocol import Run
from normcheck.target.torch_target import Candidate
from oracles import FloatFormat
from tests.normcheck.zoo import BUGGY


class SearchOnly(Auditor):
    """An auditor whose plan judges nothing: what it finds, the search found. It counts the search's inputs
    up to the first that fails, per dtype (hypothesis then shrinks that one and stops)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tried: dict[str, int] = {}
        self.first_failure: dict[str, int] = {}

    def structured_inputs(self, dtype: str, fmt: FloatFormat, eps: float) -> list[Finding]:
        return []

    def _attempt(self, case: NormInput, dtype: str, keep: bool) -> tuple[Run | None, list[Finding]]:
        run, found = super()._attempt(case, dtype, keep)
        if keep and dtype not in self.first_failure:
            self.tried[dtype] = self.tried.get(dtype, 0) + 1
            if found:
                self.first_failure[dtype] = self.tried[dtype]
        return run, found


def search_alone(spec: str, kind: str, offset: int, seed: int, examples: int) -> dict:
    """``dtype:output`` of every finding of the search alone on one bug class and seed, and per dtype the
    number of the first search input that failed."""
    options = AuditOptions(seed=seed, examples=examples)
    candidate = Candidate(load_target(spec), spec)
    auditor = SearchOnly(candidate, spec=spec, kind=kind, weight_offset=offset, options=options)
    findings = auditor.run().findings
    return {"pairs": sorted({f"{f.dtype}:{f.output or f.check}" for f in findings}), "first": auditor.first_failure}


def draw_seconds(examples: int) -> float:
    """Seconds hypothesis takes to draw a default audit's search inputs (every default dtype, seed 0) for a
    search that judges nothing: the drawing alone, as the audit's search runs it."""
    start = time.perf_counter()
    for dtype in DEFAULT_DTYPES:
        search(
            norm_inputs(dtype=dtype, eps=1e-6),
            examples=examples,
            seed_value=0,
            attempt=lambda case, keep: (None, []),
            replay=lambda case, first, keep: [],
            progress=lambda i: None,
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--examples", type=int, help="search inputs per dtype (default: the audit's)")
    parser.add_argument("--elementwise", type=int, help="strategies.ELEMENTWISE for this run")
    parser.add_argument("--json", type=Path, help="write the pairs found here")
    parser.add_argument("--compare", type=Path, help="a --json file of an earlier run")
    args = parser.parse_args()
    if args.elementwise is not None:
        strategies.ELEMENTWISE = args.elementwise
    examples = AuditOptions().examples if args.examples is None else args.examples
    draws = " / ".join(f"{draw_seconds(examples):.2f}" for _ in range(3))
    print(f"drawing {examples} search inputs per dtype in {', '.join(DEFAULT_DTYPES)}: {draws} s (three runs)")
    found: dict[str, dict[str, dict]] = {}
    start = time.perf_counter()
    print(f"{'bug class':<28} {'pairs per seed':>14}   first failing search input per seed and dtype")
    for spec, kind, offset, _bug in BUGGY:
        name = spec.split(":")[-1]
        found[name] = {str(s): search_alone(spec, kind, offset, s, examples) for s in range(args.seeds)}
        counts = " ".join(f"{len(r['pairs']):>3}" for r in found[name].values())
        shown = "  ".join(" ".join(f"{d}:{i}" for d, i in sorted(r["first"].items())) for r in found[name].values())
        print(f"{name:<28} {counts:>14}   {shown}", flush=True)
    total = sum(len(r["pairs"]) for per_seed in found.values() for r in per_seed.values())
    firsts = [i for per_seed in found.values() for r in per_seed.values() for i in r["first"].values()]
    print(
        f"{total} (dtype, output) pairs over {args.seeds} seeds; {len(firsts)} (class, seed, dtype) searches failed, "
        f"at input {sum(firsts) / max(len(firsts), 1):.1f} on average; {time.perf_counter() - start:.0f} s"
    )
    if args.json:
        args.json.write_text(json.dumps(found, indent=1) + "\n")
    if args.compare:
        earlier = json.loads(args.compare.read_text())
        missed = 0
        for name, per_seed in found.items():
            for seed, result in per_seed.items():
                before, pairs = set(earlier.get(name, {}).get(seed, {}).get("pairs", [])), set(result["pairs"])
                gained, lost = sorted(pairs - before), sorted(before - pairs)
                missed += len(lost)
                if gained or lost:
                    print(f"{name} seed {seed}: " + " ".join([f"+{p}" for p in gained] + [f"-{p}" for p in lost]))
        print(f"against {args.compare}: {missed} pairs missed")
        sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()

"""Command line: ``normcheck demo`` (the audit command arrives with the audit engine)."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from normcheck.errors import UsageError


def _demo(args: argparse.Namespace) -> int:
    from normcheck.demo import run_demo

    rows, seconds = run_demo(rows=args.rows, hidden=args.hidden, seed=args.seed)
    table = Table(title=f"torch.nn.functional.rms_norm vs the exact oracle ({args.rows}x{args.hidden}, CPU)")
    for col in ("dtype", "max ulp", "mean ulp", "signed mean ulp", "correctly rounded"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r.dtype, f"{r.max_ulp:.3f}", f"{r.mean_ulp:.4f}", f"{r.signed_mean_ulp:+.2e}", f"{r.correctly_rounded:.2%}"
        )
    console = Console()
    console.print(table)
    console.print(f"oracle time: {seconds * 1e3:.1f} ms for {3 * args.rows * args.hidden} outputs")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="normcheck", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="judge torch's RMSNorm in ULPs against the exact oracle")
    demo.add_argument("--rows", type=int, default=16)
    demo.add_argument("--hidden", type=int, default=4096)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 2 usage error)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"normcheck: error: {exc}", file=sys.stderr)
        return 2

"""The audit as ``normcheck audit`` prints it: its tables (per dtype and output, per regime), notes and
findings, fit for a terminal or an 80-column log."""

from __future__ import annotations

from typing import cast

from rich import box
from rich.console import Console
from rich.table import Table

from normcheck.notes import partial_block_lines, smallest_input_note, too_slow_lines
from normcheck.report.render import SHORT_DTYPES, SHORT_OUTPUTS, UNITS_NOTE, bound_use, short
from normcheck.report.reproducer import file_note
from normcheck.result import AuditResult


def print_result(result: AuditResult, console: Console) -> None:
    """The audit's tables, notes, verdict and findings (with their reproducers) for a terminal or a log."""
    offset = f", weight offset {result.weight_offset}" if result.weight_offset else ""
    mode = " (forward only: no autograd support)" if result.forward_only else ""
    if result.quantization is not None:
        mode = f" (quantized: {result.quantization}; forward only)"

    def narrow(title: str) -> Table:
        """A table that fits 80 columns."""
        return Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), title_justify="left")

    table = narrow(f"{result.target}: {result.kind}{offset} on {result.device}{mode}")
    for col in ("dtype", "out", "n", "max", "p99", "signed", "ulp", "sharp", "use"):
        table.add_column(col, justify="right", no_wrap=True)
    for (dtype, output), total in result.totals().items():
        s = total.summary()
        if s["count"]:
            table.add_row(
                SHORT_DTYPES[dtype],
                SHORT_OUTPUTS.get(output, output),
                str(s["count"]),
                short(s["max"]),
                short(s["p99"]),
                short(s["signed_mean"]),
                short(s["max_ulp"]),
                short(s["max_sharp"]),
                bound_use(cast(float, s["sharp_use"])),  # (a float wherever there are errors)
            )
    console.print(table)
    regimes = sorted({regime for (_d, _o, regime) in result.stats})
    by_regime = narrow(f"max error of {result.primary} by regime [sharp bound]")
    by_regime.add_column("regime", no_wrap=True)
    for dtype in result.dtypes:
        by_regime.add_column(SHORT_DTYPES[dtype], justify="right", no_wrap=True)
    for regime in regimes:
        cells = []
        for dtype in result.dtypes:
            st = result.stats.get((dtype, result.primary, regime))
            summary = st.summary() if st else {"count": 0}
            cells.append(f"{short(summary['max'])} [{short(summary['max_sharp'])}]" if summary["count"] else "-")
        by_regime.add_row(regime, *cells)
    console.print(by_regime)
    console.print(f"{UNITS_NOTE}; formulas of both bounds in the JSON report", style="dim")
    if result.eps_inferred:
        eps = ", ".join(f"{dtype} {value:g}" for dtype, value in result.eps.items())
        console.print(f"eps inferred from its outputs (it states none; --eps states it): {eps}", highlight=False)
    for dtype, kept in result.kept_parameters.items():
        console.print(f"{dtype}: {kept}", highlight=False)
    for dtype, conv in result.conventions.items():
        if conv:
            best = max(conv, key=lambda name: conv[name])
            console.print(f"{dtype}: outputs match the '{best}' convention bit for bit on {conv[best]:.1%}")
    if result.fused_style is not None:
        console.print(fused_line(result), highlight=False)
    for line in partial_block_lines(result.partial_blocks):
        console.print(line, highlight=False)
    console.print(time_line(result), style="dim", highlight=False)
    for line in too_slow_lines(result.too_slow):
        console.print(line, highlight=False)
    if result.passed:
        console.print(
            f"[bold green]PASS[/] {result.target}: {result.cases} inputs in {result.seconds:.1f} s, "
            f"every output within its bound"
        )
        return
    console.print(f"[bold red]FAIL[/] {result.target}: {len(result.findings)} finding(s)")
    for dtype, count in result.skipped.items():
        console.print(f"{dtype}: {count} inputs not run, at hidden sizes where the implementation crashed or hung")
    for f in result.findings:
        where = f" {f.output}" if f.output else ""
        console.print(f"\n[bold]{f.check}[/] {f.dtype}{where} ({f.regime} rows): {f.message}", highlight=False)
        note = smallest_input_note(f.minimal)
        if note:
            console.print(f"  {note}", highlight=False)
        if f.diagnosis is not None:
            label = f.diagnosis.bug or "unrecognized"
            console.print(f"  diagnosis: [bold]{label}[/]: {f.diagnosis.evidence}")
        if f.reproducer:
            stored = file_note(f.reproducer_file)
            line = f"  reproducer, {stored}:" if stored else "  reproducer:"
            console.print(line, style="dim", highlight=False, soft_wrap=True)  # (a path stays whole)
            console.print(f.reproducer, markup=False, highlight=False, soft_wrap=True)


def fused_line(result: AuditResult) -> str:
    """How a fused residual-add answered, and which sum its y normalized, per dtype."""
    how = (
        "returns (y, residual_out)" if result.fused_style == "return" else "writes y into x, x + residual into residual"
    )
    sums = "; ".join(
        f"{dtype}: " + ", ".join(f"{count} inputs {name}" for name, count in counts.items())
        for dtype, counts in result.residual_sums.items()
    )
    return f"fused residual-add ({how}); the sum y normalized was {sums}" if sums else f"fused residual-add ({how})"


def time_line(result: AuditResult) -> str:
    """Where the audit's time went, in one line."""
    t = result.timing
    impl, kernels, overlapped = t.get("implementation", 0.0), t.get("kernels", 0.0), t.get("overlapped", 0.0)
    rest = result.seconds - impl - t.get("oracle", 0.0) - t.get("bounds", 0.0) + overlapped
    meanwhile = f", {overlapped:.1f} s of it while the oracle and bounds ran" if overlapped else ""
    return (
        f"time {result.seconds:.1f} s: implementation {impl:.1f} s ({kernels:.1f} s in its kernels, "
        f"{impl - kernels:.1f} s copies and worker{meanwhile}), oracle {t.get('oracle', 0.0):.1f} s, "
        f"bounds {t.get('bounds', 0.0):.1f} s, search and statistics {rest:.1f} s"
    )

"""``normcheck report``: Markdown and one self-contained HTML file from one or more audit reports.

Several results go side by side in the same tables and on the same axes, so one
sees at once that a kernel is at 0.5 ulp where a reference is at 1.5.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from pathlib import Path

import normcheck
from normcheck.errors import UsageError
from normcheck.notes import partial_block_lines, smallest_input_note, too_slow_lines
from normcheck.report.json_report import SCHEMA, read_json, write_atomically
from normcheck.report.reproducer import file_note

OUTPUT_ORDER = ("y", "q", "scales", "dx", "dw", "db", "residual_out", "dresidual")
#: Table labels of a fused residual-add's outputs.
SHORT_OUTPUTS = {"residual_out": "res", "dresidual": "dres"}


@dataclass
class Figure:
    title: str
    name: str
    png: bytes

    @property
    def data(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


def load_results(paths: list[str]) -> list[dict]:
    """Read audit reports; one-line :class:`UsageError` for a missing or malformed one."""
    results = []
    for path in paths:
        data = read_json(path, SCHEMA, "audit report")
        data["_source"] = Path(path).name
        results.append(data)
    return results


def bound_use(ratio: float) -> str:
    """Error / bound as a percentage, or as a multiple once far past the bound."""
    return f"{ratio:.0%}" if ratio < 10 else f"{short(ratio)}x"


def short(value: float | None) -> str:
    """Three significant digits, exponent without padding: 2.05e3, 1.5e-5 ("-" for None)."""
    if value is None:
        return "-"
    text = f"{value:.3g}"
    return text.replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


#: Short names of the formats, for narrow tables.
SHORT_DTYPES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "float64": "fp64"}

#: What the error columns mean, in one line under every table of them.
UNITS_NOTE = (
    "errors in ulps of each element's scale (the magnitude of the terms it is computed from: its ULP error "
    "where it does not cancel); ulp: the plain ULP error where the value does not cancel; sharp: the largest "
    "sharp bound (8x the worst correct computation on the input); use: the largest error / sharp bound"
)

#: What the errors of a quantized norm's outputs are in, added to :data:`UNITS_NOTE` where a report has one.
QUANT_UNITS_NOTE = (
    "q: steps (ulps) of the element format at the exact y / scale, 0.5 at most where only the correctly rounded "
    "value is accepted (use 100% there); scales: float32 ulps of the exact scale"
)


def summary_rows(results: list[dict]) -> list[dict]:
    """One row per implementation, dtype and output: the report's ``totals`` (every regime together)."""
    rows = []
    for r in results:
        failing = {(f["dtype"], f["output"]) for f in r["findings"]}
        for t in sorted(r["totals"], key=lambda t: (t["dtype"], OUTPUT_ORDER.index(t["output"]))):
            if not t.get("count"):
                continue
            dtype = t["dtype"]
            conv = r["conventions"].get(dtype, {})
            best = max(conv, key=conv.get) if conv else None
            rows.append(
                {
                    "target": label(r),
                    "dtype": dtype,
                    "output": t["output"],
                    "count": t["count"],
                    "max": short(t["max"]),
                    "mean": short(t["mean"]),
                    "p99": short(t["p99"]),
                    "signed": short(t["signed_mean"]),
                    "ulp": short(t["max_ulp"]),
                    "sharp": short(t["max_sharp"]),
                    "rigorous": short(t["max_rigorous"]),
                    "use": bound_use(t["sharp_use"]),
                    "verdict": "fail" if (dtype, t["output"]) in failing or (dtype, None) in failing else "pass",
                    "convention": f"{best} ({conv[best]:.0%})" if best else "-",
                }
            )
    return rows


def label(result: dict, short: bool = False) -> str:
    """An implementation's name in tables: its target, and how it was run where that tells two audits of one
    target apart (``torch.compile``, the quantization); ``short``, for legends: its last name, and "compiled"."""
    settings = result["settings"]
    if short:
        name = result["target"].split(":")[-1].split(".")[-1]
        return f"{name} (compiled)" if settings.get("compile") else name
    how = [f"torch.compile: {settings['compile']}"] if settings.get("compile") else []
    if settings.get("quant"):
        how.append(f"{settings['quant']} per {settings['scaling']}")
    return f"{result['target']} ({'; '.join(how)})" if how else result["target"]


def regime_output(results: list[dict]) -> str:
    """What the per-regime table's figures are errors of, said in its heading."""
    outputs = sorted({primary(r) for r in results}, key=OUTPUT_ORDER.index)
    return " (q for quantized norms)".join(outputs) if len(outputs) > 1 else outputs[0]


def primary(result: dict) -> str:
    """The output a report's per-regime figures are of: ``q`` for a quantized norm, else ``y``."""
    return "q" if result["settings"].get("quant") else "y"


def regime_table(results: list[dict]) -> tuple[list[str], list[dict]]:
    regimes = sorted({s["regime"] for r in results for s in r["stats"] if s["output"] == primary(r)})
    rows = []
    for r in results:
        for dtype in r["settings"]["dtypes"]:
            out = primary(r)
            by = {s["regime"]: s for s in r["stats"] if s["dtype"] == dtype and s["output"] == out and s.get("count")}
            rows.append(
                {
                    "target": label(r),
                    "dtype": dtype,
                    "cells": [short(by[g]["max"]) if g in by else "-" for g in regimes],
                }
            )
    return regimes, rows


def figures(results: list[dict]) -> list[Figure]:
    """Histograms per dtype, error against magnitude and hidden size, gradient errors: all results overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = sorted({d["dtype"] for r in results for d in r.get("distributions", [])})
    panels = [
        ("y", "histogram", "error of y (ulps of scale)"),
        ("y", "by_binade", "max error of y by floor(log2|y|)"),
        ("y", "by_hidden_size", "max error of y by hidden size"),
        ("dx", "histogram", "error of dx (ulps of its terms' scale)"),
        ("q", "histogram", "error of quantized values q (steps of the element format)"),
        ("q", "by_binade", "max error of q by floor(log2|y/scale|)"),
    ]
    out = []
    for output, kind, title in panels:
        fig, axes = plt.subplots(1, max(1, len(dtypes)), figsize=(4.2 * max(1, len(dtypes)), 3.2), squeeze=False)
        drawn = False
        for ax, dtype in zip(axes[0], dtypes):
            for r in results:
                dist = next(
                    (d for d in r.get("distributions", []) if d["dtype"] == dtype and d["output"] == output), None
                )
                if not dist or kind not in dist:
                    continue
                drawn = True
                name = label(r, short=True)
                if kind == "histogram":
                    edges, counts = dist["histogram"]["edges"], dist["histogram"]["counts"]
                    total = max(1, sum(counts))
                    ax.stairs([c / total for c in counts], range(len(edges)), label=name)
                    ticks = list(range(0, len(edges), 8))
                    ax.set_xticks(
                        ticks, ["0" if edges[i] == 0 else f"$2^{{{math.log2(edges[i]):.0f}}}$" for i in ticks]
                    )
                    ax.set_xlabel("error in ulps of scale (log bins)")
                    ax.set_ylabel("fraction of outputs")
                else:
                    keys = sorted(dist[kind], key=int)
                    ax.plot([int(k) for k in keys], [dist[kind][k]["max"] for k in keys], marker="o", label=name)
                    ax.set_yscale("log")
                    ax.set_ylabel("max error (ulps of scale)")
                    ax.set_xlabel("hidden size" if kind == "by_hidden_size" else "floor(log2 |exact|)")
                    if kind == "by_hidden_size":
                        ax.set_xscale("log", base=2)
            ax.set_title(dtype)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:  # a panel of a dtype without this output has no lines
                ax.legend(fontsize=7)
        if drawn:
            fig.suptitle(title)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=90)
            out.append(Figure(title, f"{output}_{kind}.png", buf.getvalue()))
        plt.close(fig)
    return out


def _context(results: list[dict]) -> dict:
    regimes, regime_rows = regime_table(results)
    findings = [
        {
            **f,
            "target": label(r),
            "smallest": smallest_input_note(f.get("minimal")),
            "inputs": file_note(f.get("reproducer_file")),
        }
        for r in results
        for f in r["findings"]
    ]
    return {
        "summary": summary_rows(results),
        "regimes": regimes,
        "regime_rows": regime_rows,
        "regime_output": regime_output(results),
        "findings": findings,
        "too_slow": [(label(r), line) for r in results for line in too_slow_lines(r.get("too_slow", []))],
        "partial_blocks": [
            (label(r), line) for r in results for line in partial_block_lines(r.get("partial_blocks", {}))
        ],
        "figures": figures(results),
        "version": normcheck.__version__,
        "units_note": "; ".join([UNITS_NOTE] + [QUANT_UNITS_NOTE] * any(primary(r) == "q" for r in results)),
        "sources": [r["_source"] for r in results],
    }


def markdown(ctx: dict) -> str:
    lines = [
        "# normcheck precision report",
        "",
        f"Against the exact oracle: {ctx['units_note']}; rigorous: the largest rigorous bound "
        "(what no correct implementation exceeds).",
        "",
        "## Summary",
        "",
        "| implementation | dtype | output | outputs | max | mean | p99 | signed mean | ulp | sharp | rigorous "
        "| use | verdict | convention |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in ctx["summary"]:
        lines.append(
            f"| `{r['target']}` | {r['dtype']} | {r['output']} | {r['count']} | {r['max']} | {r['mean']} | "
            f"{r['p99']} | {r['signed']} | {r['ulp']} | {r['sharp']} | {r['rigorous']} | {r['use']} | "
            f"{r['verdict']} | {r['convention']} |"
        )
    lines += [
        "",
        f"## By input regime (max error of {ctx['regime_output']})",
        "",
        "| implementation | dtype | " + " | ".join(ctx["regimes"]) + " |",
        "|---|---|" + "---:|" * len(ctx["regimes"]),
    ]
    for row in ctx["regime_rows"]:
        lines.append(f"| `{row['target']}` | {row['dtype']} | " + " | ".join(row["cells"]) + " |")
    lines += ["", "## Plots", ""] + [f"![{f.title}]({f.name})" for f in ctx["figures"]]
    if ctx["too_slow"]:
        lines += ["", "## Not run", "", "Predicted from smaller inputs to take longer than the timeout (no findings):"]
        lines.append("")
        lines += [f"- **{target}**: {line}" for target, line in ctx["too_slow"]]
    if ctx["partial_blocks"]:
        lines += ["", "## Hidden sizes off the block", ""]
        lines += [f"- **{target}**: {line}" for target, line in ctx["partial_blocks"]]
    lines += ["", "## Findings", ""]
    if not ctx["findings"]:
        lines.append("No findings.")
    for f in ctx["findings"]:
        where = f" of {f['output']}" if f["output"] else ""
        lines.append(f"- **{f['target']}**: {f['check']}{where} in {f['dtype']} ({f['regime']} rows): {f['message']}")
        if f["smallest"]:
            lines.append(f"  - {f['smallest']}")
        if f.get("diagnosis"):
            lines.append(f"  - diagnosis: **{f['diagnosis']['bug'] or 'unrecognized'}**: {f['diagnosis']['evidence']}")
        if f["inputs"]:
            lines.append(f"  - reproducer: {f['inputs']}")
        if f.get("reproducer"):
            lines += ["", "```python", f["reproducer"], "```", ""]
    return "\n".join(lines) + "\n"


def render(paths: list[str], out_dir: str) -> list[Path]:
    """Write report.md (with its PNGs) and a self-contained report.html into ``out_dir``."""
    results = load_results(paths)
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {out_dir!r} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out {out_dir!r}: {exc.strerror}") from None
    ctx = _context(results)
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("normcheck", "templates"), autoescape=jinja2.select_autoescape(["html", "j2"])
    )
    written = []
    for fig in ctx["figures"]:
        write_atomically(str(folder / fig.name), fig.png)
        written.append(folder / fig.name)
    write_atomically(str(folder / "report.md"), markdown(ctx))
    write_atomically(str(folder / "report.html"), env.get_template("report.html.j2").render(**ctx))
    return [folder / "report.md", folder / "report.html", *written]

"""A scan's summary for people: 80 columns in the terminal, Markdown, and one self-contained HTML page that
opens with a compact matrix (one row per distinct implementation, one column per dtype)."""

from __future__ import annotations

import json
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from normcheck.errors import UsageError
from normcheck.report.json_report import read_json, write_atomically
from normcheck.report.render import SHORT_DTYPES, short
from normcheck.scan.reasons import AUDITED, reason_class
from normcheck.scan.summary import SCHEMA


def short_name(spec: str) -> str:
    """``pkg.mod:Name`` -> ``Name``."""
    return spec.rpartition(":")[2]


def worst(cell: dict) -> tuple[str, float] | None:
    """The output with the largest error in one dtype's cell, and that error (None: nothing measured)."""
    if not cell["worst"]:
        return None
    output = max(cell["worst"], key=lambda o: (cell["worst"][o], o))
    return output, cell["worst"][output]


def layout_note(r: dict, joint: str) -> str:
    """``/nchw`` (``joint`` first) for an implementation audited channels first; empty for rows."""
    layout = r.get("layout", "last")
    return "" if layout == "last" else f"{joint}{layout}"


def cell_text(cell: dict | None) -> str:
    """``pass 6.55`` / ``FAIL 2.05e3`` / ``FAIL`` (nothing measured) / ``-`` (dtype not audited): the verdict and
    the largest error of any output (which one: in the JSON, Markdown and HTML summaries)."""
    if cell is None:
        return "-"
    verdict = "pass" if cell["verdict"] == "pass" else "[red]FAIL[/]"
    w = worst(cell)
    return f"{verdict} {short(w[1])}" if w else verdict


def dtypes(doc: dict) -> list[str]:
    return list(doc["options"]["dtype"])


def counts_line(doc: dict) -> str:
    """The scan in one sentence."""
    c = doc["counts"]
    version = f" {doc['package_version']}" if doc["package_version"] else ""
    parts = [
        f"{c['names']} names, {c['distinct']} distinct implementations: {c['pass']} pass, {c['fail']} fail, "
        f"{c['not_audited']} not audited"
    ]
    if c["errors"]:
        parts.append(f"{c['errors']} normcheck errors")
    if c["unimportable_modules"]:
        parts.append(f"{c['unimportable_modules']} modules did not import")
    return f"{doc['target']}{version}: " + "; ".join(parts)


def group_name(r: dict) -> str:
    """A group's first short name, and how many more share its code."""
    more = len(r["names"]) - 1
    return short_name(r["names"][0]) + (f" (+{more})" if more else "")


def print_summary(doc: dict, console: Console) -> None:
    """The terminal's summary, 80 columns wide: the audited implementations' matrix, then one line for
    each failure, each implementation not audited and each module that did not import."""
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), title=counts_line(doc), title_justify="left")
    table.add_column("implementation", no_wrap=True, overflow="ellipsis", max_width=32)
    table.add_column("kind", no_wrap=True)
    for dtype in dtypes(doc):
        table.add_column(SHORT_DTYPES[dtype], no_wrap=True)
    for r in doc["groups"]:
        if r["status"] == AUDITED:
            kind = ("rms" if r["kind"] == "rmsnorm" else "ln") + layout_note(r, "/")
            table.add_row(group_name(r), kind, *(cell_text(r["dtypes"].get(d)) for d in dtypes(doc)))
    console.print(table)
    lines = []
    for r in doc["groups"]:
        if r["status"] == AUDITED and r["verdict"] == "fail":
            bugs = "; ".join(
                f"{SHORT_DTYPES[d]}: {', '.join(c['bugs'])}" for d, c in r["dtypes"].items() if c["verdict"] == "fail"
            )
            lines.append(f"[bold red]FAIL[/] {group_name(r)}: {bugs}")
    lines += [
        f"[dim]{r['status']}: {group_name(r)}: {reason_class(r['reason'])}[/]"
        for r in doc["groups"]
        if r["status"] != AUDITED
    ]
    lines += [f"[dim]did not import: {u['module']}: {u['reason']}[/]" for u in doc["unimportable"]]
    for line in lines:
        console.print(line, highlight=False, no_wrap=True, overflow="ellipsis")
    cached = sum(r["cached"] for r in doc["groups"])
    console.print(
        f"{doc['seconds']:.0f} s, {cached} of {len(doc['groups'])} audits from the cache; every reason and finding "
        "in the JSON, Markdown and HTML summaries",
        style="dim",
    )


def markdown(doc: dict) -> str:
    """The summary as Markdown: counts, the matrix, every name of each group, what was not audited."""
    c = doc["counts"]
    head = "| implementation | names | kind | " + " | ".join(dtypes(doc)) + " |"
    lines = [
        f"# normcheck scan of {doc['target']}",
        "",
        counts_line(doc) + ".",
        "",
        _options_line(doc),
        "",
        "Failing implementations per named bug (else check): "
        + (", ".join(f"{bug}: {n}" for bug, n in c["fail_by_bug"].items()) or "none")
        + ". Not audited, by reason: "
        + (", ".join(f"{why}: {n}" for why, n in c["not_audited_by_reason"].items()) or "none")
        + ".",
        "",
        "Each cell: the verdict, then the largest error of any output in ulps of each element's scale, and which. "
        "A kind with `nchw` or `ncl`: audited channels first (rows did not fit it); with 'eps inferred': it "
        "states no eps, and was audited with the one its outputs show.",
        "",
        head,
        "|---|---:|---|" + "---|" * len(dtypes(doc)),
    ]
    for r in doc["groups"]:
        name = f"`{short_name(r['names'][0])}`"
        if r["status"] == AUDITED:
            cells = [_md_cell(r["dtypes"].get(d)) for d in dtypes(doc)]
            kind = r["kind"] + layout_note(r, ", ") + (", eps inferred" if r.get("eps_inferred") else "")
            lines.append(f"| {name} | {len(r['names'])} | {kind} | " + " | ".join(cells) + " |")
    lines += ["", "## Names of each implementation", ""]
    for r in doc["groups"]:
        lines.append(f"- `{r['names'][0]}`" + "".join(f", `{n}`" for n in r["names"][1:]))
    failing = [r for r in doc["groups"] if r["status"] == AUDITED and r["verdict"] == "fail"]
    if failing:
        lines += ["", "## Findings", ""]
        for r in failing:
            lines.append(f"- `{r['names'][0]}`:")
            lines += [
                f"  - {f['dtype']} {f['output'] or ''} ({f['regime']} rows): **{f['bug']}**: {f['message']}"
                for f in r["findings"]
            ]
    skipped = [r for r in doc["groups"] if r["status"] != AUDITED]
    if skipped or doc["unimportable"]:
        lines += ["", "## Not audited", ""]
        lines += [f"- `{r['names'][0]}` ({r['status']}, {reason_class(r['reason'])}): {r['reason']}" for r in skipped]
        lines += [f"- module `{u['module']}` did not import: {u['reason']}" for u in doc["unimportable"]]
    return "\n".join(lines) + "\n"


def _md_cell(cell: dict | None) -> str:
    if cell is None:
        return "-"
    w = worst(cell)
    figure = f" ({w[0]} {short(w[1])})" if w else ""
    if cell["verdict"] == "pass":
        return "pass" + figure
    return f"**FAIL** {', '.join(cell['outputs'])}: {'; '.join(cell['bugs'])}{figure}"


def _options_line(doc: dict) -> str:
    o, v = doc["options"], doc["versions"]
    grad = "with gradients" if o["grad"] else "forward only"
    return (
        f"Default audits on {o['device']} in {', '.join(o['dtype'])}, {grad}, {o['examples']} search examples per "
        f"dtype, seed {o['seed']}; normcheck {v['normcheck']}, torch {v['torch']}."
    )


def html(doc: dict) -> str:
    """One self-contained page: the matrix first, the details below it."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("normcheck", "templates"), autoescape=jinja2.select_autoescape(["html", "j2"])
    )
    return env.get_template("scan.html.j2").render(
        doc=doc,
        dtypes=dtypes(doc),
        counts_line=counts_line(doc),
        options_line=_options_line(doc),
        short_name=short_name,
        worst=worst,
        short=short,
        reason_class=reason_class,
        layout_note=layout_note,
        audited=AUDITED,
    )


def write(doc: dict, json_path: str | None, report_dir: str | None) -> list[Path]:
    """Write the JSON summary and/or scan.md and scan.html (atomically)."""
    written = []
    if json_path:
        write_atomically(json_path, json.dumps(doc, indent=1, default=float) + "\n")
        written.append(Path(json_path))
    if report_dir:
        folder = Path(report_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create --report-dir {report_dir!r}: {exc.strerror}") from None
        write_atomically(str(folder / "scan.md"), markdown(doc))
        write_atomically(str(folder / "scan.html"), html(doc))
        written += [folder / "scan.md", folder / "scan.html"]
    return written


def load(path: str) -> dict:
    """A scan's JSON summary; one-line :class:`UsageError` for a missing or malformed one."""
    return read_json(path, SCHEMA, "scan summary")

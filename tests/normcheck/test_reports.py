"""``normcheck report`` and ``audit --report-dir``: Markdown and self-contained HTML, side by side."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

pytest.importorskip("torch")

from normcheck.cli import main

from .report_schema import valid_report

FAST = ["--examples", "3", "--dtype", "float16", "--dtype", "bfloat16"]


@pytest.fixture(scope="module")
def two_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    good, bad = folder / "good.json", folder / "bad.json"
    assert main(["audit", "tests.normcheck.zoo:LlamaRMSNorm", *FAST, "--json", str(good)]) == 0
    assert main(["audit", "tests.normcheck.zoo:MiniMindRMSNorm", *FAST, "--json", str(bad)]) == 1
    for path in (good, bad):
        valid_report(path)
    return good, bad


def test_two_results_render_side_by_side_in_markdown_and_self_contained_html(two_results, tmp_path):
    out = tmp_path / "report"
    assert main(["report", *map(str, two_results), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "LlamaRMSNorm" in md and "MiniMindRMSNorm" in md and "| llama (100%) |" in md
    assert "missing fp32 upcast" in md and "```python" in md
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / image).read_bytes().startswith(b"\x89PNG")
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
    assert 'id="summary"' in html and 'id="regimes"' in html
    assert not re.search(r'(src|href)="(?!data:)[^"#]+"', html), "the HTML must not load anything from outside"


def printed(value: float) -> str:
    """A figure as the reports print it: three significant digits, the exponent unpadded (2.05e3)."""
    return f"{value:.3g}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


class _Tables(HTMLParser):
    """The text of every cell of the HTML tables, by table id, row by row (with each cell's class)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str]]]] = {}
        self._table = self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", ""), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = [attrs.get("class") or "", ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append((self._cell[1].strip(), self._cell[0]))
            self._cell = None
        elif tag == "table":
            self._table = None


def markdown_table(md: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped, backticks dropped) of the first table under ``## heading``, header first."""
    section = md.split(f"## {heading}\n")[1].split("\n## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("|") and not line.startswith("|---")]
    return [[cell.strip().strip("`") for cell in line.strip("|").split("|")] for line in lines]


def expected_summary(report: dict) -> dict[tuple[str, str, str], dict[str, str]]:
    """Per (implementation, dtype, output), what the summary must print: from the JSON's own values."""
    failing = {(f["dtype"], f["output"]) for f in report["findings"]}
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    for s in report["stats"]:
        key = (report["target"], s["dtype"], s["output"])
        row = rows.setdefault(key, {"outputs": 0, "max": 0.0})
        row["outputs"] += s["count"]
        row["max"] = max(row["max"], s["max"])
    return {
        (target, dtype, output): {
            "outputs": str(row["outputs"]),
            "max": printed(row["max"]),
            "verdict": "fail" if {(dtype, output), (dtype, None)} & failing else "pass",
        }
        for (target, dtype, output), row in rows.items()
    }


def test_the_reports_print_each_implementation_its_verdicts_and_the_jsons_figures(two_results, tmp_path):
    out = tmp_path / "report"
    assert main(["report", *map(str, two_results), "--out", str(out)]) == 0
    reports = [json.loads(p.read_text()) for p in two_results]
    good, bad = reports
    assert good["verdict"] == "pass" and bad["verdict"] == "fail"
    want: dict = {}
    for r in reports:
        want |= expected_summary(r)
    assert {v["verdict"] for k, v in want.items() if k[0] == good["target"]} == {"pass"}
    assert want[(bad["target"], "float16", "y")]["verdict"] == "fail"
    normal_y = {  # the by-regime table: the largest error of y on normal rows, per implementation and dtype
        (r["target"], s["dtype"]): printed(s["max"])
        for r in reports
        for s in r["stats"]
        if (s["output"], s["regime"]) == ("y", "normal")
    }

    md = (out / "report.md").read_text()
    header, *rows = markdown_table(md, "Summary")
    got = {tuple(row[:3]): dict(zip(header, row)) for row in rows}
    assert set(got) == set(want)
    for key, cells in want.items():
        assert {name: got[key][name] for name in ("outputs", "max", "verdict")} == cells, key
    header, *rows = markdown_table(md, "By input regime (max error of y)")
    assert {(row[0], row[1]): row[header.index("normal")] for row in rows} == normal_y
    for f in bad["findings"]:
        assert f["message"] in md

    tables = _Tables()
    tables.feed((out / "report.html").read_text())
    header, *rows = tables.tables["summary"]
    names = [text for text, _ in header]
    got = {tuple(text for text, _ in row[:3]): {n: c for n, c in zip(names, row)} for row in rows}
    assert set(got) == set(want)
    for key, cells in want.items():
        assert got[key]["outputs"][0] == cells["outputs"] and got[key]["max"][0] == cells["max"], key
        assert got[key]["verdict"] == (cells["verdict"], cells["verdict"]), key  # the text, and its class
    header, *rows = tables.tables["regimes"]
    column = [text for text, _ in header].index("normal")
    assert {(row[0][0], row[1][0]): row[column][0] for row in rows} == normal_y


def test_audit_report_dir_writes_json_markdown_and_html_in_one_go(tmp_path):
    out = tmp_path / "r"
    assert (
        main(
            [
                "audit",
                "tests.normcheck.zoo:GemmaRMSNorm",
                "--examples",
                "2",
                "--dtype",
                "float16",
                "--report-dir",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "audit.json").read_text())["verdict"] == "pass"
    assert (out / "report.md").is_file() and (out / "report.html").is_file()


@pytest.mark.parametrize(
    "content, message",
    [(None, "no such file"), ("{not json", "cannot read"), ('{"schema": "other"}', "is not a normcheck audit report")],
)
def test_missing_or_malformed_results_are_one_line_errors(tmp_path, capsys, content, message):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    assert main(["report", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def _chromium() -> str | None:
    return next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (Debian package chromium); .ci/run installs it")
def test_the_html_loads_in_a_real_headless_browser_with_its_tables_and_images(two_results, tmp_path):
    out = tmp_path / "report"
    assert main(["report", *map(str, two_results), "--out", str(out)]) == 0
    url = (out / "report.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table id="summary">' in dom.stdout and '<table id="regimes">' in dom.stdout
    assert dom.stdout.count('<img alt="') >= 3
    assert "Uncaught" not in dom.stderr and "Failed to load resource" not in dom.stderr
    shot = tmp_path / "shot.png"
    subprocess.run(
        [_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,1800", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 50_000  # a rendered page, not a blank one


def test_how_a_quantized_norm_answered_a_hidden_size_off_its_block_is_in_both_reports(tmp_path):
    from pathlib import Path

    committed = Path(__file__).parents[2] / "reports" / "json"
    out = tmp_path / "report"
    reports = [committed / "quantized-nvfp4.json", committed / "quantized-fp8-per-token.json"]
    assert main(["report", *map(str, reports), "--out", str(out)]) == 0
    refused = "float16, bfloat16, float32: a hidden size that is not a multiple of the block: refused (n=40"
    markdown, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "## Hidden sizes off the block" in markdown and markdown.count(refused) == 1  # NVFP4's, not per-token's
    assert "<h2>Hidden sizes off the block</h2>" in html and html.count(refused) == 1

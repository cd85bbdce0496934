"""``normcheck report`` and ``audit --report-dir``: Markdown and self-contained HTML, side by side."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("torch")

from normcheck.cli import main

FAST = ["--examples", "3", "--dtype", "float16", "--dtype", "bfloat16"]


@pytest.fixture(scope="module")
def two_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    good, bad = folder / "good.json", folder / "bad.json"
    assert main(["audit", "tests.normcheck.zoo:LlamaRMSNorm", *FAST, "--json", str(good)]) == 0
    assert main(["audit", "tests.normcheck.zoo:MiniMindRMSNorm", *FAST, "--json", str(bad)]) == 1
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

"""``normcheck report`` and ``audit --report-dir``: Markdown and self-contained HTML, side by side."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

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

"""reports/census.md: the census of transformers' norm classes, rendered from the committed JSON alone (no audits)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generate():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "reports" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_census_class_has_a_mechanism_and_a_committed_audit_of_its_own():
    g = _generate()
    names = [entry.name for entry in g.CENSUS]
    assert len(names) == len(set(names)) >= 19
    for entry in g.CENSUS:
        assert len(entry.mechanism) > 40 and "TODO" not in entry.mechanism and "|" not in entry.mechanism, entry.name
        data = json.loads((ROOT / "reports" / "json" / f"census-{entry.name}.json").read_text())
        assert data["target"] == entry.spec and data["device"] == "cpu"
        assert data["settings"]["dtypes"] == ["float16", "bfloat16", "float32"] and data["settings"]["gradients"]
        assert (ROOT / "reports" / "json" / f"census-{entry.name}.log").is_file()
        assert set(entry.review or {}) <= set(data["settings"]["dtypes"])


def test_census_md_renders_from_the_committed_json_and_is_up_to_date(tmp_path, monkeypatch, capsys):
    g = _generate()
    (tmp_path / "json").symlink_to(ROOT / "reports" / "json")
    monkeypatch.setattr(g, "HERE", tmp_path)
    assert g.run(["--census", "--table"]) == 0
    md = (tmp_path / "census.md").read_text()
    assert md == (ROOT / "reports" / "census.md").read_text(), "stale: python reports/generate.py --census --table"
    counts = capsys.readouterr().out.strip()
    assert counts and counts + "." in md
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(rows) == len(g.CENSUS)
    for entry, row in zip(g.CENSUS, rows):
        data = json.loads((ROOT / "reports" / "json" / f"census-{entry.name}.json").read_text())
        cells = row.split(" | ")[1:4]
        assert row.startswith(f"| `{entry.name}` (`{entry.spec.split(':')[0]}`) | ")
        assert row.endswith(f" | {entry.mechanism} |")
        for dtype, cell in zip(("float16", "bfloat16", "float32"), cells):
            failed = any(f["dtype"] == dtype for f in data["findings"])
            review = (entry.review or {}).get(dtype)
            assert cell.startswith("**verdict under review**" if review else ("FAIL" if failed else "pass")), cell
            assert ("y " in cell) and (failed == ("FAIL " in cell)), cell


def test_readme_states_the_census_counts_of_the_committed_json():
    g = _generate()
    reports = [json.loads((ROOT / "reports" / "json" / f"census-{e.name}.json").read_text()) for e in g.CENSUS]
    failing = sum(data["verdict"] != "pass" for data in reports)
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "reports/census.md" in readme and "python reports/generate.py --census --table" in readme
    assert f"{len(reports)} transformers norm classes: {len(reports) - failing} pass, {failing} fail" in readme
    by_bug = g.census_counts().split("Failing classes per named bug (else check): ")[1]
    assert f"(else the failed check; a class can be named for several): {by_bug}." in readme

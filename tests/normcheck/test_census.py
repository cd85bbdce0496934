"""reports/: README's tables are the committed audits'; the committed scan of transformers (census/) is up to date
with its JSON, carries no checkout's paths, and every failing implementation in it has its mechanism checked by
hand (mechanisms.md, census_fixes.py)."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CENSUS = ROOT / "reports" / "census"


def _generate():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "reports" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readmes_tables_are_printed_from_the_committed_audits(capsys):
    g = _generate()
    assert g.run(["--table"]) == 0
    plain, quantized = capsys.readouterr().out.strip().split("\n\n")
    readme = (ROOT / "README.md").read_text()
    stale = "stale: python reports/generate.py --table, into README"
    assert plain in readme and quantized in readme, stale
    assert quantized.count("(pass)") == 24 and quantized.count("FAIL scales: amax of the input") == 3


def test_readmes_cuda_tables_are_printed_from_the_committed_cuda_audits(capsys):
    assert _generate().run(["--table", "--device", "cuda"]) == 0
    plain, quantized = capsys.readouterr().out.strip().split("\n\n")
    readme = (ROOT / "README.md").read_text()
    assert plain in readme and quantized in readme, "stale: python reports/generate.py --table --device cuda"
    assert plain.count("CUDA: ") == 15 and quantized.count("(pass)") == 15


def test_the_census_renders_from_its_committed_json_and_is_up_to_date(tmp_path, monkeypatch, capsys):
    g = _generate()
    (tmp_path / "scan.json").write_bytes((CENSUS / "scan.json").read_bytes())
    monkeypatch.setattr(g, "CENSUS", tmp_path)
    assert g.run(["--census", "--table"]) == 0
    for name in ("scan.md", "scan.html"):
        stale = f"stale: python reports/generate.py --census --table ({name})"
        assert (tmp_path / name).read_text() == (CENSUS / name).read_text(), stale
    counts = capsys.readouterr().out.strip()
    assert counts.startswith(f"{json.loads((CENSUS / 'scan.json').read_text())['counts']['names']} classes")


def test_the_census_names_no_file_of_the_checkout_that_wrote_it():
    for name in ("scan.json", "scan.md", "scan.html"):
        assert str(ROOT) not in (CENSUS / name).read_text(), name
    doc = json.loads((CENSUS / "scan.json").read_text())
    files = set(re.findall(r"reports/census/reproducers/[\w-]+\.npz", json.dumps(doc)))
    assert files and all((ROOT / f).is_file() for f in files)  # the large inputs its reproducers load


def test_every_failing_implementation_has_its_mechanism_and_a_hand_check():
    doc = json.loads((CENSUS / "scan.json").read_text())
    failing = {r["names"][0].rpartition(":")[2] for r in doc["groups"] if r.get("verdict") == "fail"}
    text = (CENSUS / "mechanisms.md").read_text()
    sections = re.findall(r"^## `(\w+)`$", text, re.MULTILINE)
    assert set(sections) == failing and len(sections) == len(failing)
    for body in re.split(r"^## `\w+`$", text, flags=re.MULTILINE)[1:]:
        assert "Checked:" in body and len(body) > 100
    g = _generate()
    fixes = ast.parse((ROOT / "reports" / "census_fixes.py").read_text())
    defined = {node.name for node in fixes.body if isinstance(node, ast.ClassDef)}
    checked = {name for name, _extra, _bugs in g.CENSUS_CHECKS}
    named = set(re.findall(r"`((?:Kernel)?Fixed\w+)`", text))
    assert named <= checked <= defined, (named - checked, checked - defined)

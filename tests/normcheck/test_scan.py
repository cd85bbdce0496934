"""``normcheck scan`` on a package of our own (tests/normcheck/targets/scanpkg): groups of identical code,
verdicts, named bugs and the reasons for what is not audited; the cache (a killed scan resumes, a changed
implementation is audited again, an unchanged one is not); shards merged equal the whole scan."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from normcheck.scan.summary import merge

from .report_schema import SCAN_VALIDATOR, schema_errors

PACKAGE = Path(__file__).parent / "targets" / "scanpkg"
#: A short audit: enough to catch the package's bugs (float16), and float32 to pass what is correct there.
AUDIT = ["--dtype", "float16", "--dtype", "float32", "--examples", "5", "--no-grad"]


def scan(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m normcheck scan`` (or another command) with ``folder`` on the path, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(folder)}
    out = subprocess.run(
        [sys.executable, "-m", "normcheck", *args], capture_output=True, text=True, env=env, timeout=300
    )
    if check:
        assert out.returncode in (0, 1), out.stderr
    return out


def copy_package(folder: Path) -> Path:
    shutil.copytree(PACKAGE, folder / "scanpkg", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One whole scan of the package, with its cache, JSON summary and reports."""
    root = tmp_path_factory.mktemp("scan")
    folder = copy_package(root / "pkgs")
    cache = root / "cache"
    out = scan(
        folder, "scan", "scanpkg", *AUDIT, "--jobs", "2", "--cache", str(cache),
        "--json", str(root / "whole.json"), "--report-dir", str(root / "report"),
    )  # fmt: skip
    return {
        "root": root,
        "folder": folder,
        "cache": cache,
        "out": out,
        "doc": json.loads((root / "whole.json").read_text()),
    }


def test_every_summary_follows_its_schema(whole: dict, tmp_path: Path) -> None:
    census = json.loads((Path(__file__).resolve().parents[2] / "reports" / "census" / "scan.json").read_text())
    merged = merge([whole["doc"], whole["doc"]])
    for doc in (whole["doc"], census, merged):
        errors = schema_errors(doc, SCAN_VALIDATOR)
        assert not errors, "\n".join(errors)
    assert schema_errors({**whole["doc"], "groups": [{**whole["doc"]["groups"][0], "kind": None}]}, SCAN_VALIDATOR)


def by_name(doc: dict) -> dict[str, dict]:
    return {name.rpartition(":")[2]: row for row in doc["groups"] for name in row["names"]}


def test_groups_verdicts_bugs_and_reasons(whole: dict) -> None:
    doc, rows = whole["doc"], by_name(whole["doc"])
    assert whole["out"].returncode == 1  # two implementations fail
    # The copy (other name, docstring, comments, annotations) is audited once, under the first name.
    assert rows["CopiedRMSNorm"] is rows["LlamaStyleRMSNorm"]
    assert rows["CopiedRMSNorm"]["names"] == ["scanpkg.copies:CopiedRMSNorm", "scanpkg.llama:LlamaStyleRMSNorm"]
    assert len(doc["groups"]) == 8 and doc["counts"]["names"] == 9
    for name in ("CopiedRMSNorm", "rms_norm", "ChannelsFirstLayerNorm"):
        assert rows[name]["status"] == "audited" and rows[name]["verdict"] == "pass", name
    assert rows["rms_norm"]["kind"] == "rmsnorm" and rows["rms_norm"]["layout"] == "last"
    # Rows do not fit it: audited over the channels of (N, C, H, W).
    assert rows["ChannelsFirstLayerNorm"]["kind"] == "layernorm" and rows["ChannelsFirstLayerNorm"]["layout"] == "nchw"
    upcast = rows["NoUpcastRMSNorm"]
    assert upcast["dtypes"]["float16"]["verdict"] == "fail" and upcast["dtypes"]["float32"]["verdict"] == "pass"
    assert upcast["dtypes"]["float16"]["bugs"] == ["missing fp32 upcast"]
    assert upcast["dtypes"]["float16"]["worst"]["y"] > 100  # the statistic in float16: far past any bound
    crash = rows["HalfCrashingLayerNorm"]
    assert crash["kind"] == "layernorm" and crash["dtypes"]["float16"]["bugs"] == ["exception"]
    assert crash["dtypes"]["float32"]["verdict"] == "pass"
    reasons = {name: rows[name]["reason"] for name in ("ConfigLayerNorm", "GatedRMSNorm", "ScalingLayerNorm")}
    assert all(rows[name]["status"] == "not audited" for name in reasons)
    assert "cannot construct ConfigLayerNorm" in reasons["ConfigLayerNorm"]
    assert "missing 1 required positional argument: 'gate'" in reasons["GatedRMSNorm"]
    assert "matches neither RMSNorm nor LayerNorm" in reasons["ScalingLayerNorm"]
    assert doc["counts"]["not_audited_by_reason"] == {
        "its constructor": 1,
        "its call (it needs other inputs, or raised)": 1,
        "not an RMSNorm or LayerNorm": 1,
    }
    assert doc["unimportable"] == [
        {
            "module": "scanpkg.broken",
            "reason": "ModuleNotFoundError: No module named 'normcheck_scan_test_missing_module'",
        }
    ]
    counts = doc["counts"]
    assert (counts["audited"], counts["pass"], counts["fail"], counts["errors"]) == (5, 3, 2, 0)
    assert counts["fail_by_bug"] == {"missing fp32 upcast": 1, "exception": 1}
    assert not any(row["cached"] for row in doc["groups"])


def test_terminal_markdown_and_html(whole: dict) -> None:
    text = whole["out"].stdout
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "CopiedRMSNorm (+1)" in text and "FAIL NoUpcastRMSNorm: fp16: missing fp32 upcast" in text
    assert re.search(r"NoUpcastRMSNorm +rms +FAIL 2\.05e3 +pass 3\.\d+", text), text
    assert re.search(r"ChannelsFirstLayerNorm +ln/nchw +pass", text), text
    md = (whole["root"] / "report" / "scan.md").read_text()
    assert "| `NoUpcastRMSNorm` | 1 | rmsnorm | **FAIL** y: missing fp32 upcast (y 2.05e3) |" in md
    assert "- `scanpkg.copies:CopiedRMSNorm`, `scanpkg.llama:LlamaStyleRMSNorm`" in md
    page = (whole["root"] / "report" / "scan.html").read_text()
    assert '<td class="name" title="scanpkg.copies:CopiedRMSNorm">CopiedRMSNorm' in page
    assert "+1 with the same code" in page and 'title="scanpkg.llama:LlamaStyleRMSNorm">LlamaStyleRMSNorm' in page
    assert page.index('id="matrix"') < page.index("<h2>Findings</h2>") < page.index("<h2>Not audited</h2>")


def test_rerun_takes_every_audit_from_the_cache(whole: dict, tmp_path: Path) -> None:
    scan(
        whole["folder"],
        "scan",
        "scanpkg",
        *AUDIT,
        "--cache",
        str(whole["cache"]),
        "--json",
        str(tmp_path / "again.json"),
    )
    again = json.loads((tmp_path / "again.json").read_text())
    assert all(row["cached"] for row in again["groups"])
    assert strip(again) == strip(whole["doc"])


def strip(doc: dict) -> dict:
    """What a scan found, without how it got there (time, cache, the environment's platform)."""
    rows = [{k: v for k, v in row.items() if k != "cached"} for row in doc["groups"]]
    return {"groups": rows, "counts": doc["counts"], "unimportable": doc["unimportable"], "options": doc["options"]}


def test_a_changed_implementation_is_audited_again_and_only_it(whole: dict, tmp_path: Path) -> None:
    folder = copy_package(tmp_path)
    source = folder / "scanpkg" / "copies.py"
    source.write_text(
        source.read_text().replace("def __init__(self, dim, eps=1e-5):", "def __init__(self, dim, eps=1e-6):")
    )
    scan(folder, "scan", "scanpkg", *AUDIT, "--cache", str(whole["cache"]), "--json", str(tmp_path / "changed.json"))
    rows = by_name(json.loads((tmp_path / "changed.json").read_text()))
    audited_again = sorted(name for name, row in rows.items() if not row["cached"])
    assert audited_again == ["NoUpcastRMSNorm"]


def test_two_shards_merge_into_the_whole_scan(whole: dict, tmp_path: Path) -> None:
    # The first shard audits on its own (the Llama norm, under its own name); the second takes the whole
    # scan's cache (the copy of it, under the name the whole scan audited: the first of both).
    shards = [(tmp_path / "cache", "--include"), (whole["cache"], "--exclude")]  # (the README's partition)
    paths = []
    for i, (cache, choose) in enumerate(shards):
        paths.append(str(tmp_path / f"shard{i}.json"))
        args = ["--cache", str(cache), choose, "scanpkg.llama.*", "--json", paths[-1]]
        scan(whole["folder"], "scan", "scanpkg", *AUDIT, *args)
    parts = [json.loads(Path(p).read_text()) for p in paths]
    assert [len(p["groups"]) for p in parts] == [2, 7]  # the Llama norm is in both, under one name each
    assert by_name(parts[0])["LlamaStyleRMSNorm"]["target"] == "scanpkg.llama:LlamaStyleRMSNorm"
    out = scan(whole["folder"], "merge", *paths, "--json", str(tmp_path / "merged.json"))
    assert out.returncode == 1, out.stdout
    assert strip(json.loads((tmp_path / "merged.json").read_text())) == strip(whole["doc"])


def test_merging_shards_of_other_options_is_refused(whole: dict, tmp_path: Path) -> None:
    other = {**whole["doc"], "options": {**whole["doc"]["options"], "examples": 7}}
    (tmp_path / "other.json").write_text(json.dumps(other))
    shards = [str(whole["root"] / "whole.json"), str(tmp_path / "other.json")]
    out = scan(whole["folder"], "merge", *shards, "--json", str(tmp_path / "m.json"), check=False)
    assert out.returncode == 2 and "the shards differ in options" in out.stderr and "Traceback" not in out.stderr


def test_a_killed_scan_resumes_without_redoing_finished_audits(tmp_path: Path) -> None:
    folder, cache = copy_package(tmp_path / "pkgs"), tmp_path / "cache"
    args = [sys.executable, "-m", "normcheck", "scan", "scanpkg", *AUDIT, "--jobs", "1", "--cache", str(cache)]
    env = {**os.environ, "PYTHONPATH": str(folder)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(cache.glob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the scan and every process it started
        proc.wait()
    finished = len(list(cache.glob("*.json")))
    assert 1 <= finished < 8, "the scan should have been killed midway"
    scan(folder, "scan", "scanpkg", *AUDIT, "--cache", str(cache), "--json", str(tmp_path / "resumed.json"))
    doc = json.loads((tmp_path / "resumed.json").read_text())
    assert sum(row["cached"] for row in doc["groups"]) == finished
    assert len(list(cache.glob("*.json"))) == 8 and doc["counts"]["audited"] == 5


def test_a_target_that_does_not_import_is_a_usage_error(tmp_path: Path) -> None:
    out = scan(tmp_path, "scan", "no_such_package_xyz", "--cache", str(tmp_path / "c"), check=False)
    assert out.returncode == 2 and "cannot import 'no_such_package_xyz' to scan it" in out.stderr
    assert "Traceback" not in out.stderr


def test_fingerprints_set_aside_names_docstrings_comments_and_annotations_only(tmp_path: Path, monkeypatch) -> None:
    from normcheck.scan.fingerprint import fingerprint

    body = """
EPS = {eps}


def helper(x):
    return x * {scale}


class {name}:
    {doc}
    def forward(self, x{annotation}):  # {comment}
        return helper(x) + EPS if isinstance(self, {name}) else None
"""
    variants = {
        "base": dict(eps="1e-6", scale="2", name="ARMSNorm", doc="", annotation="", comment="a"),
        "renamed": dict(eps="1e-6", scale="2", name="BRMSNorm", doc='"""Doc."""', annotation=": int", comment="b"),
        "constant": dict(eps="1e-5", scale="2", name="ARMSNorm", doc="", annotation="", comment="a"),
        "helper": dict(eps="1e-6", scale="3", name="ARMSNorm", doc="", annotation="", comment="a"),
    }
    (tmp_path / "fpkg").mkdir()
    (tmp_path / "fpkg" / "__init__.py").write_text("")
    for module, fields in variants.items():
        (tmp_path / "fpkg" / f"{module}.py").write_text(body.format(**fields))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    prints = {m: fingerprint(getattr(importlib.import_module(f"fpkg.{m}"), f["name"])) for m, f in variants.items()}
    assert prints["renamed"] == prints["base"]  # the class's own name, a docstring, a comment, an annotation
    assert prints["constant"] != prints["base"]  # the value of a module constant it names
    assert prints["helper"] != prints["base"]  # the code of a helper it calls

"""One aggregation: the terminal table, the JSON's totals and the Markdown report show the same figures."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from normcheck.api import audit
from normcheck.cli import main
from normcheck.report.json_report import write_report
from normcheck.report.render import short


def test_the_report_p99_is_the_percentile_of_every_error_as_in_the_terminal(tmp_path):
    result = audit("torch.nn.RMSNorm", kind="rmsnorm", dtype="float16", examples=0, grad=False, in_process=True)
    total = result.totals()[("float16", "y")].summary()
    per_regime = [s.summary()["p99"] for (d, o, _r), s in result.stats.items() if (d, o) == ("float16", "y")]
    assert short(max(per_regime)) != short(total["p99"])  # the two aggregations differ on this audit
    path = tmp_path / "a.json"
    write_report(str(path), result, {})
    [entry] = [t for t in json.loads(path.read_text())["totals"] if (t["dtype"], t["output"]) == ("float16", "y")]
    assert entry["p99"] == total["p99"] and entry["count"] == total["count"]
    assert main(["report", str(path), "--out", str(tmp_path / "r")]) == 0
    lines = (tmp_path / "r" / "report.md").read_text().splitlines()
    header = [c.strip() for c in next(line for line in lines if "| p99 |" in line).split("|")]
    [row] = [[c.strip() for c in line.split("|")] for line in lines if "| float16 | y |" in line]
    assert row[header.index("p99")] == short(total["p99"])
    assert row[header.index("max")] == short(total["max"])

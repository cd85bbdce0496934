"""Portable test vectors: the committed corpus, round trips, scoring outputs computed elsewhere."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import oracles
from normcheck.cli import main
from normcheck.report.vectors import check, dumps, generate

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "examples" / "vectors"
SCHEMA = json.loads((ROOT / "normcheck" / "schemas" / "vectors.schema.json").read_text())
FILES = sorted(CORPUS.glob("*.json"))


def _h(values: list[str]) -> np.ndarray:
    return np.array([float.fromhex(v) for v in values])


def test_the_committed_corpus_covers_both_kinds_and_all_formats_and_is_current():
    assert {f.name for f in FILES} == {
        f"{k}-{d}.json" for k in ("rmsnorm", "layernorm") for d in ("float16", "bfloat16", "float32", "float64")
    }
    for f in FILES:
        corpus = json.loads(f.read_text())
        jsonschema.validate(corpus, SCHEMA)
        assert dumps(generate(corpus["algorithm"], corpus["dtype"])) == f.read_text(), (
            f"{f.name} is stale: regenerate with `python -m normcheck vectors --out-dir examples/vectors`"
        )


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_the_corpus_round_trips_through_hex_to_the_same_correct_roundings(path):
    corpus = json.loads(path.read_text())
    fmt = oracles.resolve_format(corpus["dtype"])
    for t in corpus["tests"][::7]:
        x = _h(t["x"]).reshape(t["shape"]).astype(fmt.dtype)
        w = _h(t["weight"]).astype(fmt.dtype)
        eps = float.fromhex(t["eps"])
        if corpus["algorithm"] == "rmsnorm":
            y = oracles.rms_norm(x, w, eps, t["weight_offset"])
        else:
            y = oracles.layer_norm(x, w, _h(t["bias"]).astype(fmt.dtype), eps, t["weight_offset"])
        got = y.round(fmt).astype(np.float64).ravel()
        want = _h(t["expected"]["y"])
        assert np.array_equal(got, want, equal_nan=True), t["tcId"]


def _torch_results(corpus: dict, spec: str) -> dict:
    torch = pytest.importorskip("torch")
    from normcheck.target.loading import construct_module, load_target

    target, dtype = load_target(spec), getattr(torch, corpus["dtype"])
    results = []
    for t in corpus["tests"]:
        if t["weight_offset"]:
            continue  # these modules scale by w, not 1 + w: those cases are not theirs to answer
        x = torch.tensor(_h(t["x"]).reshape(t["shape"])).to(dtype).requires_grad_()
        m = construct_module(target, t["shape"][-1], float.fromhex(t["eps"])).to(dtype)
        with torch.no_grad():
            m.weight.copy_(torch.tensor(_h(t["weight"])))
        y = m(x)
        y.backward(torch.tensor(_h(t["grad_output"]).reshape(t["shape"])).to(dtype))
        hexes = lambda a: [float(v).hex() for v in a.detach().double().reshape(-1)]  # noqa: E731
        results.append({"tcId": t["tcId"], "y": hexes(y), "dx": hexes(x.grad), "dw": hexes(m.weight.grad)})
    return {"tests": results}


def test_outputs_of_a_correct_implementation_pass():
    corpus = json.loads((CORPUS / "rmsnorm-float16.json").read_text())
    assert check(corpus, _torch_results(corpus, "tests.normcheck.zoo:MiniMindFixedRMSNorm")) == []


def test_outputs_of_a_buggy_implementation_fail_with_comments_saying_why(tmp_path, capsys):
    corpus = json.loads((CORPUS / "rmsnorm-float16.json").read_text())
    results = _torch_results(corpus, "tests.normcheck.zoo:MiniMindRMSNorm")
    failures = check(corpus, results)
    assert failures and any("float16 squares overflow" in f["comment"] for f in failures)
    (tmp_path / "r.json").write_text(json.dumps(results))
    assert main(["check-vectors", str(CORPUS / "rmsnorm-float16.json"), str(tmp_path / "r.json")]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_the_numpy_consumer_needs_no_normcheck(tmp_path):
    out = tmp_path / "results.json"
    code = "import sys; sys.modules['normcheck'] = None; sys.modules['oracles'] = None; import runpy; "
    code += f"sys.argv = ['x', {str(CORPUS / 'layernorm-bfloat16.json')!r}, {str(out)!r}]; "
    code += "runpy.run_path('examples/check_vectors_numpy.py', run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    total = len(json.loads((CORPUS / "layernorm-bfloat16.json").read_text())["tests"])
    assert f"{total} of {total} cases within their bounds" in proc.stdout
    assert main(["check-vectors", str(CORPUS / "layernorm-bfloat16.json"), str(out)]) == 0


def test_the_numpy_consumer_fails_infinities_where_the_exact_value_is_finite():
    consumer = runpy.run_path(str(ROOT / "examples" / "check_vectors_numpy.py"))
    corpus = json.loads((CORPUS / "rmsnorm-float16.json").read_text())
    fmt = corpus["format"]
    overflows = 0
    for test in corpus["tests"]:
        expected = np.array([float.fromhex(v) for v in test["expected"]["y"]])
        assert consumer["score"](test, "y", expected, fmt) is None  # the correct roundings pass
        overflows += int(np.isinf(expected).sum())
        finite = [i for i, v in enumerate(test["exact"]["y"]) if v is not None and np.isfinite(expected[i])]
        if finite:
            bad = expected.copy()
            bad[finite[0]] = np.inf
            assert "inf where the exact value is" in consumer["score"](test, "y", bad, fmt)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["check-vectors", "nope.json", "nope.json"], "no such file 'nope.json'"),
        (["check-vectors", "README.md", "README.md"], "cannot read 'README.md' as JSON"),
        (["vectors", "--kind", "rmsnorm"], "give exactly one of --out FILE"),
        (["vectors", "--out", "x.json"], "--out needs --kind and --dtype"),
        (["vectors", "--out-dir", "no/such/dir"], "is not a folder"),
    ],
)
def test_bad_vector_commands_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err

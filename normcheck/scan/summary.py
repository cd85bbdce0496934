"""A scan's summary as plain JSON data (schema ``normcheck.scan/1``): one row per distinct implementation with
every name that shares its code, its verdict, named bugs and worst errors per dtype; shards merge into the
summary of the whole scan."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from normcheck.errors import UsageError
from normcheck.scan.reasons import AUDITED, ERROR, NOT_AUDITED, reason_class

SCHEMA = "normcheck.scan/1"
OUTPUTS = ("y", "dx", "dw", "db")


def named_bug(finding: dict) -> str:
    """The bug a finding is diagnosed as, else the check it failed."""
    return (finding.get("diagnosis") or {}).get("bug") or finding["check"]


def worst_errors(report: dict, dtype: str, outputs: tuple[str, ...] = OUTPUTS) -> dict[str, float]:
    """Per output (of ``outputs``), its largest error in ``dtype`` over every regime, in ulps of each element's
    scale."""
    worst: dict[str, float] = {}
    for s in report["stats"]:
        if s["dtype"] == dtype and s["count"]:
            worst[s["output"]] = max(worst.get(s["output"], s["max"]), s["max"])
    return {o: worst[o] for o in outputs if o in worst}


def cell(report: dict, dtype: str) -> dict:
    """One dtype of one audit: its verdict, the outputs that fail, the named bugs and the worst errors."""
    found = [f for f in report["findings"] if f["dtype"] == dtype]
    return {
        "verdict": "fail" if found else "pass",
        "outputs": sorted({f["output"] for f in found if f["output"]}),
        "bugs": sorted({named_bug(f) for f in found}),
        "worst": worst_errors(report, dtype),
    }


def row(names: list[str], code: str, record: dict, cached: bool) -> dict:
    """The summary of one distinct implementation (``names[0]`` was audited)."""
    out = {"names": names, "code": code, "status": record["status"], "reason": record.get("reason"), "cached": cached}
    report = record.get("report")
    if record["status"] == AUDITED and report is not None:
        out.update(
            target=report["target"],
            kind=report["kind"],
            layout=report["settings"].get("layout", "last"),
            eps_inferred=report.get("eps_inferred", False),
            weight_offset=report["weight_offset"],
            verdict=report["verdict"],
            dtypes={dtype: cell(report, dtype) for dtype in report["settings"]["dtypes"]},
            findings=[
                {k: f[k] for k in ("dtype", "output", "check", "regime", "message", "reproducer")}
                | {"bug": named_bug(f)}
                for f in report["findings"]
            ],
        )
    return out


def counts(rows: list[dict], unimportable: list[dict]) -> dict:
    """The scan's totals: names, distinct implementations, verdicts, failures by named bug, the reasons not
    audited, and the modules that did not import."""
    audited = [r for r in rows if r["status"] == AUDITED]
    failed = [r for r in audited if r["verdict"] == "fail"]
    bugs = Counter(bug for r in failed for bug in sorted({f["bug"] for f in r["findings"]}))
    reasons = Counter(reason_class(r["reason"]) for r in rows if r["status"] == NOT_AUDITED)
    return {
        "names": sum(len(r["names"]) for r in rows),
        "distinct": len(rows),
        "audited": len(audited),
        "pass": len(audited) - len(failed),
        "fail": len(failed),
        "not_audited": sum(reasons.values()),
        "errors": sum(r["status"] == ERROR for r in rows),
        "unimportable_modules": len(unimportable),
        "fail_by_bug": dict(bugs.most_common()),
        "not_audited_by_reason": dict(reasons.most_common()),
    }


def summary(
    target: str,
    package_version: str | None,
    include: list[str],
    exclude: list[str],
    options: dict,
    versions: dict,
    environment: dict,
    rows: list[dict],
    unimportable: list[dict],
    seconds: float,
) -> dict:
    """The scan's JSON document; rows sorted by their first name."""
    rows = sorted(rows, key=lambda r: r["names"][0])
    unimportable = sorted(unimportable, key=lambda u: u["module"])
    return {
        "schema": SCHEMA,
        "target": target,
        "package_version": package_version,
        "include": include,
        "exclude": exclude,
        "options": options,
        "versions": versions,
        "environment": environment,
        "counts": counts(rows, unimportable),
        "groups": rows,
        "unimportable": unimportable,
        "seconds": round(seconds, 1),
    }


#: What shards must share to merge: the same options (device included), the same versions.
SHARED = ("schema", "package_version", "options", "versions")


def merge(shards: Iterable[dict]) -> dict:
    """The summary of the whole scan from its shards' summaries: rows of the same code joined (the name
    audited is the first of all, as a whole scan picks it), modules that did not import listed once; the
    shards' own patterns under ``shards``."""
    shards = list(shards)
    first = shards[0]
    for shard in shards[1:]:
        for field in SHARED:
            if shard.get(field) != first.get(field):
                raise UsageError(f"the shards differ in {field}: {first.get(field)!r} and {shard.get(field)!r}")
    by_code: dict[str, list[dict]] = {}
    for shard in shards:
        for r in shard["groups"]:
            by_code.setdefault(r["code"], []).append(r)
    rows = []
    for parts in by_code.values():
        chosen = min(parts, key=lambda r: r["names"][0])
        rows.append({**chosen, "names": sorted({n for r in parts for n in r["names"]})})
    unimportable = {u["module"]: u for shard in shards for u in shard["unimportable"]}
    merged = summary(
        " + ".join(dict.fromkeys(s["target"] for s in shards)),
        first["package_version"],
        [],
        [],
        first["options"],
        first["versions"],
        first["environment"],
        rows,
        list(unimportable.values()),
        sum(s["seconds"] for s in shards),
    )
    merged["shards"] = [{k: s[k] for k in ("target", "include", "exclude")} for s in shards]
    return merged

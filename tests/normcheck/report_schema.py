"""The audit report's JSON Schema (normcheck/schemas/audit-report.schema.json), for tests that write reports,
and the scan summary's (scan-summary.schema.json)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

SCHEMAS = Path(__file__).resolve().parents[2] / "normcheck" / "schemas"
SCHEMA = json.loads((SCHEMAS / "audit-report.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
SCAN_VALIDATOR = jsonschema.Draft202012Validator(json.loads((SCHEMAS / "scan-summary.schema.json").read_text()))


def schema_errors(data: dict, validator: jsonschema.Draft202012Validator = VALIDATOR) -> list[str]:
    """Every way ``data`` departs from the schema, one line each (empty: a valid report)."""
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:300]}" for e in errors]


def valid_report(path: str | Path) -> dict:
    """The report at ``path``, asserted valid against the schema."""
    data = json.loads(Path(path).read_text())
    errors = schema_errors(data)
    assert not errors, "\n".join(errors)
    return data

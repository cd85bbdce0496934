"""The versioned JSON audit report, written atomically.

Schema ``normcheck.audit/2`` (see ``normcheck/schemas/audit-report.md``): target and settings,
environment, the eps used per dtype, the bound per output with its reason, ULP
statistics per dtype, output and regime, the matched convention, and findings
with diagnosis and a reproducer.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

import normcheck
from normcheck.errors import UsageError
from normcheck.result import CHECKS, AuditResult

SCHEMA = "normcheck.audit/2"


def environment(device: str) -> dict[str, str]:
    env = {
        "normcheck": normcheck.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["device_name"] = (
            torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor() or "cpu"
        )
        if device.startswith("cuda"):
            env["cuda"] = str(torch.version.cuda)
            env["driver"] = _nvidia_driver()
    except ImportError:
        pass
    for package in ("triton", "liger_kernel", "transformers", "jax", "flax"):
        try:
            env[package] = importlib.metadata.version(package.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            pass
    return env


def _nvidia_driver() -> str:
    """The NVIDIA driver version, as nvidia-smi reports it ("unknown" without nvidia-smi)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"


def to_dict(result: AuditResult, settings: dict) -> dict:
    """The report as plain JSON data."""
    findings = []
    for f in result.findings:
        diag = None
        if f.diagnosis is not None:
            diag = {
                "bug": f.diagnosis.bug,
                "evidence": f.diagnosis.evidence,
                "matches": [asdict(m) for m in f.diagnosis.matches],
            }
        findings.append(
            {
                "check": f.check,
                "dtype": f.dtype,
                "output": f.output,
                "regime": f.regime,
                "message": f.message,
                "worst": f.worst,
                "occurrences": f.occurrences,
                "minimal": f.minimal,
                "diagnosis": diag,
                "reproducer": f.reproducer,
                "reproducer_file": f.reproducer_file,
                "detail": f.detail,
            }
        )
    return {
        "schema": SCHEMA,
        "target": result.target,
        "kind": result.kind,
        "device": result.device,
        "weight_offset": result.weight_offset,
        "verdict": "pass" if result.passed else "fail",
        "environment": environment(result.device),
        "settings": {
            **settings,
            "dtypes": result.dtypes,
            "seed": result.seed,
            "examples": result.examples,
            "forward_only": result.forward_only,
            "isolation": result.isolation,
        },
        "eps": result.eps,
        "eps_inferred": result.eps_inferred,
        "kept_parameters": result.kept_parameters,
        "checks": list(CHECKS),
        "bounds": [{"dtype": d, "output": o, **r} for (d, o), r in sorted(result.bound_reasons.items())],
        "stats": [
            {"dtype": d, "output": o, "regime": g, **s.summary()} for (d, o, g), s in sorted(result.stats.items())
        ],
        "totals": [{"dtype": d, "output": o, **s.summary()} for (d, o), s in result.totals().items()],
        "distributions": _distributions(result),
        "conventions": result.conventions,
        "fused": None if result.fused_style is None else {"style": result.fused_style, "sums": result.residual_sums},
        "findings": findings,
        "cases": result.cases,
        "skipped": result.skipped,
        "restarts": result.restarts,
        "partial_blocks": result.partial_blocks,
        "too_slow": result.too_slow,
        "seconds": round(result.seconds, 3),
        "timing": {part: round(t, 3) for part, t in result.timing.items()},
    }


def _distributions(result: AuditResult) -> list[dict]:
    """Per dtype and output, over every regime: the error histogram and errors by magnitude and size."""
    return [{"dtype": d, "output": o, **s.distribution()} for (d, o), s in sorted(result.totals().items())]


def check_writable(path: str, option: str = "--json") -> None:
    """Fail early, with one line, if a file cannot be written at ``path`` (by trying, as root too)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"{option} {path!r} is a directory; give a file name")
    if not folder.is_dir():
        raise UsageError(f"cannot write {option} {path!r}: no folder {str(folder)!r}")
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"cannot write {option} {path!r}: permission denied")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)
    except OSError as exc:
        raise UsageError(f"cannot write {option} {path!r}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(probe)


def write_atomically(path: str, content: str | bytes) -> None:
    """Write ``content`` to ``path`` via a temporary file and a rename: readers never see half a file."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    except OSError as exc:
        raise UsageError(f"cannot write {path!r}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content.encode("utf-8") if isinstance(content, str) else content)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str, schema: str, what: str) -> dict:
    """The JSON document at ``path`` whose ``schema`` field is ``schema``; one-line :class:`UsageError` for a
    missing, unreadable or other document (``what`` names the expected kind in the message)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no such file {path!r}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path!r} as JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != schema:
        raise UsageError(f"{path!r} is not a normcheck {what} (expected schema {schema!r})")
    return data


def write_report(path: str, result: AuditResult, settings: dict) -> None:
    write_atomically(path, json.dumps(to_dict(result, settings), indent=2, default=float) + "\n")

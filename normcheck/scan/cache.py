"""Finished audits kept on disk, one file each, keyed by what decides their outcome: the implementation's
code, the versions of normcheck, torch and the scanned package, and the audit's options. A killed scan
finds its finished audits here; a rerun after an upgrade re-audits only what the upgrade changed."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import normcheck
from normcheck.errors import UsageError
from normcheck.options import AuditOptions
from normcheck.report.json_report import write_atomically


def default_folder() -> Path:
    """``$XDG_CACHE_HOME/normcheck/scan`` (``~/.cache/normcheck/scan`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "normcheck" / "scan"


def versions(package_version: str | None) -> dict[str, str | None]:
    """The versions an audit's outcome depends on besides the code itself."""
    import torch

    return {"normcheck": normcheck.__version__, "torch": torch.__version__, "package": package_version}


def chosen_options(options: AuditOptions) -> dict:
    """The options an audit's outcome depends on (where reproducers go is not one of them)."""
    return {k: v for k, v in asdict(options).items() if k != "reproducer_dir"}


def key(code: str, versions: dict[str, str | None], options: AuditOptions) -> str:
    """The cache key of one implementation's audit (its name is not part of it: a renamed copy is found)."""
    text = json.dumps(
        {"code": code, "versions": versions, "options": chosen_options(options)}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Cache:
    """One JSON file per finished audit in ``folder`` (created on first use), written atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise UsageError(f"--cache {str(folder)!r} exists and is not a folder")

    def get(self, entry: str) -> dict | None:
        """The record stored under ``entry``, or None (an unreadable one counts as missing)."""
        try:
            return json.loads((self.folder / f"{entry}.json").read_text())
        except (OSError, ValueError):
            return None

    def put(self, entry: str, record: dict) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the scan cache {str(self.folder)!r}: {exc.strerror}") from None
        write_atomically(str(self.folder / f"{entry}.json"), json.dumps(record, default=float) + "\n")

"""pytest plugin: the ``normcheck`` fixture, the ``normcheck`` marker, options and a summary section.

Loaded through the ``pytest11`` entry point; importing it does not import torch.

- ``normcheck.audit(impl, kind=None, **options)`` (the fixture) audits an
  implementation in the test's dtype and device and fails the test with the
  findings, the bound, the named bug and a reproducer.
- ``@pytest.mark.normcheck`` parametrizes a test over the configured dtypes and
  devices (``@pytest.mark.normcheck(dtypes=[...], devices=[...])`` overrides);
  CUDA cases skip where no GPU is present.
- Settings, most specific first: ``--normcheck-dtype`` (repeatable),
  ``--normcheck-device``, ``--normcheck-examples``, ``--normcheck-seed``,
  ``--normcheck-report DIR``; then ini keys ``normcheck_dtypes`` ... ; then
  ``[tool.normcheck]`` in pyproject.toml (``dtypes``, ``devices``, ``examples``,
  ``seed``, ``report_dir``).
- A reproducer of a large input loads it from a file in the report folder (without one, in
  ``normcheck-reproducers/`` of the current directory); the failure message names it.
- Under pytest-xdist each result travels with its test report, so the summary
  lists every worker's audits; reports go to one file per test, dtype and device.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DTYPE_OPTION, DEVICE_OPTION = "--normcheck-dtype", "--normcheck-device"
EXAMPLES_OPTION, SEED_OPTION, REPORT_OPTION = "--normcheck-examples", "--normcheck-seed", "--normcheck-report"
DEFAULTS = {
    "dtypes": ["float16", "bfloat16", "float32"],
    "devices": ["cpu"],
    "examples": 50,
    "seed": 0,
    "report_dir": None,
}
_PROPERTY = "normcheck"
#: The session's settings, in the config's stash.
_SETTINGS = pytest.StashKey["Settings"]()


@dataclass
class Settings:
    dtypes: list[str]
    devices: list[str]
    examples: int
    seed: int
    report_dir: str | None
    summary: list[dict] = field(default_factory=list)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("normcheck", "exact-oracle audits of RMSNorm / LayerNorm")
    group.addoption(
        DTYPE_OPTION,
        action="append",
        dest="normcheck_dtype",
        default=None,
        choices=("float16", "bfloat16", "float32", "float64"),
        help="dtype to audit in (repeatable)",
    )
    group.addoption(
        DEVICE_OPTION,
        action="append",
        dest="normcheck_device",
        default=None,
        help="device to audit on: cpu or cuda (repeatable)",
    )
    group.addoption(
        EXAMPLES_OPTION, type=int, dest="normcheck_examples", default=None, help="random search examples per dtype"
    )
    group.addoption(SEED_OPTION, type=int, dest="normcheck_seed", default=None, help="search seed")
    group.addoption(
        REPORT_OPTION,
        dest="normcheck_report",
        default=None,
        metavar="DIR",
        help="write one JSON report per audit into DIR",
    )
    parser.addini("normcheck_dtypes", "dtypes to audit in", type="linelist", default=[])
    parser.addini("normcheck_devices", "devices to audit on", type="linelist", default=[])
    parser.addini("normcheck_examples", "random search examples per dtype", default="")
    parser.addini("normcheck_seed", "search seed", default="")
    parser.addini("normcheck_report_dir", "folder for JSON reports", default="")


def _pyproject(rootpath: Path) -> dict:
    path = rootpath / "pyproject.toml"
    if not path.is_file():
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    with path.open("rb") as fh:
        return tomllib.load(fh).get("tool", {}).get("normcheck", {})


def _settings(config: pytest.Config) -> Settings:
    table = _pyproject(config.rootpath)

    def pick(option: str, ini: str, key: str, convert=lambda v: v):
        value = config.getoption(option)
        if value not in (None, []):
            return value
        raw = config.getini(ini)
        if raw not in ("", []):
            return convert(raw)
        return table.get(key, DEFAULTS[key])

    return Settings(
        dtypes=list(pick("normcheck_dtype", "normcheck_dtypes", "dtypes")),
        devices=list(pick("normcheck_device", "normcheck_devices", "devices")),
        examples=int(pick("normcheck_examples", "normcheck_examples", "examples", int)),
        seed=int(pick("normcheck_seed", "normcheck_seed", "seed", int)),
        report_dir=pick("normcheck_report", "normcheck_report_dir", "report_dir") or None,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "normcheck(dtypes=None, devices=None): run the test once per normcheck dtype and device"
    )
    config.stash[_SETTINGS] = _settings(config)
    config.pluginmanager.register(_Summary(config.stash[_SETTINGS]), "normcheck-summary")


def pytest_report_header(config: pytest.Config) -> str:
    s = config.stash[_SETTINGS]
    return (
        f"normcheck: dtypes={','.join(s.dtypes)} devices={','.join(s.devices)} "
        f"{EXAMPLES_OPTION}={s.examples} {SEED_OPTION}={s.seed}"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("normcheck")
    if marker is None:
        return
    s = metafunc.config.stash[_SETTINGS]
    dtypes = marker.kwargs.get("dtypes") or s.dtypes
    devices = marker.kwargs.get("devices") or s.devices
    params = [pytest.param(dt, dev, id=f"{dt}-{dev}") for dev in devices for dt in dtypes]
    metafunc.fixturenames.extend(n for n in ("normcheck_dtype", "normcheck_device") if n not in metafunc.fixturenames)
    metafunc.parametrize(("normcheck_dtype", "normcheck_device"), params)


class NormcheckFixture:
    """What the ``normcheck`` fixture gives a test."""

    def __init__(self, request: pytest.FixtureRequest, dtypes: list[str], device: str) -> None:
        self._request, self.dtypes, self.device = request, dtypes, device
        self._settings = request.config.stash[_SETTINGS]

    def audit(self, impl: object, *, kind: str | None = None, **options: object):
        """Audit ``impl`` in the test's dtype(s) and device; fail the test on any finding."""
        __tracebackhide__ = True
        from normcheck.api import describe_failure, open_audit
        from normcheck.options import AuditOptions

        if self.device != "cpu":
            from normcheck.errors import UsageError
            from normcheck.target.torch_bridge import require_device

            pytest.importorskip("torch")
            try:
                require_device(self.device)
            except UsageError as exc:
                pytest.skip(f"normcheck: {exc}")
        options.setdefault("examples", self._settings.examples)
        options.setdefault("seed", self._settings.seed)
        if self._settings.report_dir:  # reproducers of large inputs store them beside the reports
            options.setdefault("reproducer_dir", self._settings.report_dir)
        audit_options = AuditOptions().updated(kind=kind, dtype=tuple(self.dtypes), device=self.device, **options)
        with open_audit(impl, audit_options) as auditor:
            result = auditor.run()
            settings = {**audit_options.settings(auditor.caller.c.framework), "source": "pytest"}
        line = {
            "target": result.target,
            "kind": result.kind,
            "dtypes": result.dtypes,
            "device": result.device,
            "verdict": "pass" if result.passed else "fail",
            "findings": len(result.findings),
            "bugs": sorted({f.diagnosis.bug for f in result.findings if f.diagnosis and f.diagnosis.bug}),
        }
        self._request.node.user_properties.append((_PROPERTY, json.dumps(line)))
        if self._settings.report_dir:
            self._write_report(result, settings, self._settings.report_dir)
        if not result.passed:
            pytest.fail(describe_failure(result), pytrace=False)
        return result

    def _write_report(self, result, settings: dict, report_dir: str) -> None:
        from normcheck.report.json_report import to_dict, write_atomically

        folder = Path(report_dir)
        folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self._request.node.nodeid}-{'-'.join(result.dtypes)}-{self.device}")
        write_atomically(str(folder / f"{name}.json"), json.dumps(to_dict(result, settings), indent=2))


@pytest.fixture
def normcheck(request: pytest.FixtureRequest) -> NormcheckFixture:
    """Audit implementations against the exact oracle; see :class:`NormcheckFixture`."""
    s = request.config.stash[_SETTINGS]
    callspec = getattr(request.node, "callspec", None)
    params = callspec.params if callspec else {}
    dtypes = [params["normcheck_dtype"]] if "normcheck_dtype" in params else s.dtypes
    device = params.get("normcheck_device", s.devices[0])
    return NormcheckFixture(request, dtypes, device)


@pytest.fixture
def normcheck_dtype() -> str:
    """The dtype of a ``@pytest.mark.normcheck`` test (parametrized by the marker)."""
    return "float32"


@pytest.fixture
def normcheck_device() -> str:
    """The device of a ``@pytest.mark.normcheck`` test (parametrized by the marker)."""
    return "cpu"


class _Summary:
    """Collects audit results from test reports (from xdist workers too) for the summary section."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for key, value in report.user_properties:
            if key == _PROPERTY and report.when == "call" and isinstance(value, str):  # (json.dumps wrote it)
                self.settings.summary.append(json.loads(value))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.settings.summary:
            return
        terminalreporter.section("normcheck")
        for line in self.settings.summary:
            bugs = f" [{', '.join(line['bugs'])}]" if line["bugs"] else ""
            terminalreporter.write_line(
                f"{line['verdict'].upper():4} {line['target']} {line['kind']} {','.join(line['dtypes'])} on "
                f"{line['device']}: {line['findings']} finding(s){bugs}"
            )

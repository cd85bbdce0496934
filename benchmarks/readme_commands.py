"""The README's two commands, verbatim, as a new user runs them: a clean clone, a fresh virtual environment.

    python benchmarks/readme_commands.py [--quick] [--repo PATH] [--keep]

Clones the repository at ``--repo`` (default: this checkout's committed HEAD) into a
temporary directory, creates a virtual environment there with nothing in it, and
runs each ``&&`` step of the two commands of the README's first ``bash`` block in
it, in order, with a fresh ``HOME`` (no matplotlib, numba or hypothesis caches; pip
keeps its download cache). Then the first command's audit again, as the steady
state. Prints each step's exit status and wall time; exits non-zero if any fails.

``--quick`` (what ``.ci/run`` runs, before it installs anything optional) replaces
the final ``pytest`` of the second command by ``pytest --collect-only -q`` (every
test module must be collected without the optional packages) and a fast subset
(``tests/oracles oracles``), and skips the steady-state rerun.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK_TESTS = "python -m pytest -q tests/oracles oracles"


def readme_commands(readme: Path) -> list[str]:
    """The commands of the README's first ``bash`` block, one per line."""
    block = re.search(r"^```bash\n(.*?)^```", readme.read_text(), re.S | re.M)
    if block is None:
        raise SystemExit(f"{readme}: no ```bash block")
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def steps(commands: list[str], quick: bool) -> list[tuple[str, str]]:
    """``(label, shell step)`` for every ``&&`` part of the commands, the audit rerun last."""
    out: list[tuple[str, str]] = []
    for number, command in enumerate(commands, 1):
        for part in (p.strip() for p in command.split("&&")):
            if quick and part.startswith("python -m pytest"):
                out += [(f"command {number}", f"{part} --collect-only -q"), (f"command {number}", QUICK_TESTS)]
            else:
                out.append((f"command {number}", part))
    if not quick:
        audit = commands[0].split("&&")[-1].strip()
        out.append(("steady state", audit))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(ROOT), help="a git repository to clone (default: this checkout)")
    parser.add_argument("--quick", action="store_true", help="collect every test and run a fast subset only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="normcheck-readme-"))
    clone, home = work / "clone", work / "home"
    home.mkdir()
    subprocess.run(["git", "clone", "--quiet", args.repo, str(clone)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(clone / ".venv")], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "NUMBA_", "XDG_"))}
    pip_cache = subprocess.run(
        [sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True, check=False
    ).stdout.strip()
    env.update(HOME=str(home), VIRTUAL_ENV=str(clone / ".venv"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    env["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    if pip_cache and not pip_cache.startswith("ERROR"):
        env["PIP_CACHE_DIR"] = pip_cache
    failed = False
    print(f"clone of {args.repo} in {clone}", flush=True)
    for label, step in steps(readme_commands(clone / "README.md"), args.quick):
        start = time.perf_counter()
        done = subprocess.run(["bash", "-c", step], cwd=clone, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        verdict = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
        print(f"{label}: {shlex.quote(step)}  {seconds:.1f} s  {verdict}", flush=True)
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        print("".join(f"    {line}\n" for line in tail), end="", flush=True)
        failed |= done.returncode != 0
    if args.keep:
        print(f"kept {work}")
    else:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""A worker process: forked from a zygote or started as a fresh interpreter (never a fork of the auditor), its
main loop (load the target, answer ``describe``, ``run``, ``repeat`` and ``keep_parameters``), and how it
ended when it is stopped: the signal, and its last words from its log (Python's ``faulthandler`` stack).
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import normcheck
from normcheck.errors import UsageError
from normcheck.options import AuditOptions
from normcheck.target.loading import load_target
from normcheck.target.registry import make_candidate
from normcheck.target.torch_bridge import warm_up_autograd
from normcheck.target.zygote import WorkerProcess, die_with_parent, serve, start_worker

#: Bytes of the worker's output kept for a crash or timeout report.
LOG_TAIL = 6000
#: Set in a worker's environment: an audit started inside a worker is a script without a main guard.
WORKER_ENV = "NORMCHECK_WORKER"


@dataclass
class Worker:
    """A worker process, the auditor's connection to it, the file its output goes to, and its greeting."""

    process: WorkerProcess
    conn: Connection
    log: str
    hello: dict | None = None

    def stop(self, *, hung: bool = False) -> tuple[str, str | None]:
        """End the worker and return how it ended and its last output (its log is removed).

        A worker that is waiting for work exits when its connection closes; one
        that crashed is given a moment to finish dying; a hung one is asked for its
        Python stack (faulthandler prints it even from inside C) and killed.
        """
        process = self.process
        self.conn.close()
        stopped = hung and process.poll() is None
        if stopped:
            if hasattr(signal, "SIGUSR1"):
                size = os.path.getsize(self.log)
                process.send_signal(signal.SIGUSR1)
                deadline = time.monotonic() + 2.0
                while os.path.getsize(self.log) == size and time.monotonic() < deadline:
                    time.sleep(0.02)
                time.sleep(0.05)
            process.kill()
        try:
            code = process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            code, stopped = process.wait(), True
        detail = log_tail(self.log)
        Path(self.log).unlink(missing_ok=True)
        if stopped:
            error = "the worker process was stopped"
        elif code < 0:
            sig = signal.Signals(-code).name
            error = f"the worker process was killed by {sig}" + (" (out of memory?)" if sig == "SIGKILL" else "")
        else:
            error = f"the worker process exited with status {code}"
        fatal = re.search(r"^Fatal Python error: (.+)$", detail or "", re.M)
        if fatal:
            error += f" ({fatal.group(1).strip()})"
        where = crash_site(detail)
        if where:
            error += f" in {where}"
        return error, detail


def spawn(payload: tuple[str, object], name: str, options: AuditOptions) -> Worker:
    """Start a worker process and send it the target (as it travels: ``isolation.payload``) and the options;
    it loads in the background. It is forked from a warm zygote (:mod:`normcheck.target.zygote`) unless the
    target is stated to be a JAX or numpy one (the zygote holds torch, which those do not need)."""
    ours, theirs = socket.socketpair()
    env = dict(os.environ, **{WORKER_ENV: "1"})
    # Idle OpenMP threads sleep instead of spinning (results are the same): spinning ones took a core
    # from the oracle while the worker waited for its next input.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    root = str(Path(normcheck.__file__).resolve().parent.parent)  # normcheck importable from a checkout too
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    fd, log = tempfile.mkstemp(prefix="normcheck-worker-", suffix=".log")
    os.close(fd)
    here = "from normcheck.target.worker import "
    command = [sys.executable, "-c", here + "worker_main; worker_main()"]
    warm = [sys.executable, "-c", here + "zygote_main; zygote_main()"]
    zygote = None if options.framework in ("jax", "numpy") else warm
    process = start_worker(command, zygote, theirs.fileno(), env, log)
    theirs.close()
    conn = Connection(ours.detach())
    conn.send((list(sys.path), payload, name, options))
    return Worker(process, conn, log)


def log_tail(path: str) -> str | None:
    """The end of the worker's output (its prints, faulthandler's stacks, a CUDA error)."""
    with open(path, "rb") as fh:
        fh.seek(max(0, os.path.getsize(path) - LOG_TAIL))
        text = fh.read().decode("utf-8", errors="replace").strip()
    return text or None


def crash_site(detail: str | None) -> str | None:
    """``function (file:line)`` of the innermost frame of the crashed thread's stack (faulthandler's) that is
    not in Python's standard library or torch: the implementation's own code, where it shows."""
    if not detail:
        return None
    current = detail.split("Current thread", 1)  # the thread that crashed (or took the stack-dump signal)
    stack = current[-1].split("most recent call first):", 1)
    frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', stack[1].split("\n\n", 1)[0] if len(stack) > 1 else "")
    if not frames:
        return None
    library = tuple(
        str(Path(m.__file__).resolve().parent) for m in (os, sys.modules.get("torch")) if m is not None and m.__file__
    )
    own = [f for f in frames if not str(Path(f[0]).resolve()).startswith(library)]
    file, line, function = (own or frames)[0]
    return f"{function} ({Path(file).name}:{line})"


def zygote_main() -> None:
    """A zygote (:mod:`normcheck.target.zygote`): torch imported and autograd warmed up once, on the CPU, then
    a worker forked for each request."""
    die_with_parent()
    try:
        warm_up_autograd()
    except UsageError:  # no torch here: the workers import what their targets need
        pass
    serve(int(sys.argv[1]), worker_main)


def worker_main(fd: int | None = None) -> None:
    """The worker process on ``fd`` (its socket to the auditor; the last argument when None): load the target,
    then answer ``describe`` and ``run`` until the auditor closes."""
    conn = Connection(int(sys.argv[-1]) if fd is None else fd)
    die_with_parent()
    faulthandler.enable(all_threads=True)  # stderr is the log the auditor reads after a crash
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    path, (how, payload), name, options = conn.recv()
    sys.path[:] = path
    try:
        try:
            impl = load_target(payload) if how == "spec" else pickle.loads(payload)
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"the worker process cannot load {name}: {type(exc).__name__}: {exc}") from None
        candidate = make_candidate(impl, name, options.in_worker())
    except UsageError as exc:
        conn.send(("usage", str(exc)))
        return
    if candidate.framework == "torch":
        warm_up_autograd(options.device)
    hello = {"style": candidate.style, "function_parameters": candidate.function_parameters}
    conn.send(("ok", {**hello, "framework": candidate.framework}))
    while True:
        try:
            op, *args = conn.recv()
        except EOFError:
            return
        restart = False
        try:
            if op in ("describe", "keep_parameters"):
                reply: tuple = ("ok", getattr(candidate, op)(*args))
            else:  # "run" or "repeat"
                start = time.perf_counter()
                run = getattr(candidate, op)(*args)
                run.handled = time.perf_counter() - start
                restart = run.failure == "exception" and not candidate.device_is_healthy()
                reply = ("ok", run)
        except UsageError as exc:
            reply = ("usage", str(exc))
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        conn.send((*reply, "restart") if restart else reply)
        if restart:
            return

"""Workers forked from a zygote (normcheck/target/zygote.py): one zygote per environment, each worker in the
auditor's environment and working directory of the moment, exit statuses and deaths by signal reported as a
child process's are, workers that die with their zygote. The workers here echo (targets/echo_worker.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from normcheck.target.zygote import WorkerProcess, start_worker

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="zygotes need Linux's pidfd_open")

ROOT = Path(__file__).resolve().parents[2]
ZYGOTE = [sys.executable, "-c", "from tests.normcheck.targets.echo_worker import main; main()"]
NOT_FORKED = [sys.executable, "-c", "raise SystemExit('a fresh interpreter, not a forked worker')"]


def start(log: Path, **env: str) -> tuple[WorkerProcess, Connection, tuple]:
    """A worker forked from the zygote of this environment (plus ``env``), and its echo."""
    ours, theirs = socket.socketpair()
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    process = start_worker(NOT_FORKED, ZYGOTE, theirs.fileno(), env, str(log))
    theirs.close()
    conn = Connection(ours.detach())
    assert conn.poll(120), log.read_text()
    return process, conn, conn.recv()


def test_workers_of_one_environment_share_a_zygote_and_run_where_the_auditor_is(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    first = start(tmp_path / "1.log", NORMCHECK_ECHO="one")
    monkeypatch.chdir(tmp_path / "b")
    again = start(tmp_path / "2.log", NORMCHECK_ECHO="one", PYTEST_CURRENT_TEST="another test (setup)")
    other = start(tmp_path / "3.log", NORMCHECK_ECHO="two")
    (a, one, zygote), (b, same, zygote_again), (_, two, other_zygote) = first[2], again[2], other[2]
    assert (a, b) == (str(tmp_path / "a"), str(tmp_path / "b"))
    assert (one, same, two) == ("one", "one", "two")
    assert zygote == zygote_again != other_zygote and os.getpid() not in (zygote, other_zygote)
    for process, conn, _ in (first, again, other):
        conn.close()
        assert process.wait(30) == 0


def test_an_exit_status_and_a_death_by_signal_come_back_as_a_child_processs_do(tmp_path):
    exits, segv, killed = (start(tmp_path / f"{i}.log", NORMCHECK_ECHO="status") for i in range(3))
    assert exits[0].poll() is None
    exits[1].send("exit 3")
    segv[1].send("segv")
    killed[0].kill()
    assert (exits[0].wait(30), segv[0].wait(30), killed[0].wait(30)) == (3, -signal.SIGSEGV, -signal.SIGKILL)
    running, conn, _ = start(tmp_path / "3.log", NORMCHECK_ECHO="status")
    with pytest.raises(subprocess.TimeoutExpired):
        running.wait(0.1)
    conn.close()
    assert running.wait(30) == 0


def test_workers_die_with_their_zygote_and_the_next_worker_gets_a_new_one(tmp_path):
    process, conn, (_, _, zygote) = start(tmp_path / "1.log", NORMCHECK_ECHO="doomed")
    os.kill(zygote, signal.SIGKILL)
    assert process.wait(30) == -signal.SIGKILL
    assert conn.poll(30)
    with pytest.raises(EOFError):  # the kernel killed the worker too (it would answer otherwise)
        conn.recv()
    _, _, (_, _, new_zygote) = start(tmp_path / "2.log", NORMCHECK_ECHO="doomed")
    assert new_zygote != zygote


def test_outside_the_main_thread_a_worker_is_a_fresh_interpreter(tmp_path):
    # (Linux kills a child whose parent thread ends: a zygote started from a thread would die with it.)
    started: list[WorkerProcess] = []
    ours, theirs = socket.socketpair()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    thread = threading.Thread(
        target=lambda: started.append(start_worker(NOT_FORKED, ZYGOTE, theirs.fileno(), env, str(tmp_path / "log")))
    )
    thread.start()
    thread.join()
    theirs.close()
    ours.close()
    [process] = started
    assert isinstance(process, subprocess.Popen) and process.wait(60) == 1
    assert "a fresh interpreter, not a forked worker" in (tmp_path / "log").read_text()

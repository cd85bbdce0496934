"""Worker processes forked from a warm one (a zygote) that imported torch once, instead of fresh interpreters.

A worker that starts as ``python -c`` imports torch and warms autograd up first: about 5 s of CPU on a
2-core machine, paid by every audit, and again by every replacement of a lost worker. A zygote is started
that way once per auditor process and environment; each worker is then a ``fork`` of it, ready in
milliseconds. The zygote never runs a kernel, opens a device or starts a thread of its own, so a worker
forked from it is as fresh as an interpreter started for it: no CUDA context, no threads or locks of the
auditor's, no user ``__main__``. The zygote runs the worker with the environment and working directory the
auditor has when it asks (a variable that differs from the zygote's own, other than pytest's per-test
``PYTEST_CURRENT_TEST``, gets a zygote of its own: torch reads some at import), and reports each worker's
exit status (Linux ``pidfd``; elsewhere every worker is a fresh interpreter).
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import IO, Protocol

#: Environment variables that change between an auditor's calls without changing what a worker imports.
VOLATILE = ("PYTEST_CURRENT_TEST",)
#: Seconds a zygote may take to import torch and answer a request to fork.
START_TIMEOUT = 180.0
#: The largest message between the auditor and a zygote (an environment, a working directory, a path).
MESSAGE_BYTES = 1 << 20


class WorkerProcess(Protocol):
    """What the auditor does with a worker process: :class:`subprocess.Popen`'s ``poll``, ``wait``, ``kill``
    and ``send_signal`` (a signal's death as a negative status)."""

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...

    def send_signal(self, sig: int) -> None: ...


def start_worker(
    command: list[str], zygote_command: list[str] | None, fd: int, env: dict[str, str], log: str
) -> WorkerProcess:
    """A worker process that runs with ``fd`` (a socket to the auditor), ``env`` and its output in ``log``: forked
    from the zygote for ``env`` (started with ``zygote_command``), or ``command`` with ``fd`` as its last argument
    in a fresh interpreter where processes cannot be forked and watched, outside the main thread, or where
    ``zygote_command`` is None."""
    # Only from the main thread: Linux kills a process whose parent *thread* ends (die_with_parent), and the
    # zygote outlives the audit that started it.
    main = threading.current_thread() is threading.main_thread()
    if zygote_command is not None and main and hasattr(os, "pidfd_open") and hasattr(os, "fork"):
        key = tuple(sorted((k, v) for k, v in env.items() if k not in VOLATILE))
        zygote = _ZYGOTES.get(key)
        if zygote is None or zygote.lost:
            zygote = _ZYGOTES[key] = Zygote(zygote_command, env)
        try:
            return zygote.fork(fd, env, log)
        except OSError:  # the zygote is gone: this worker starts the slow way
            zygote.close()
    with open(log, "wb") as out:
        return _interpreter(command, fd, env, out)


def _interpreter(command: list[str], fd: int, env: dict[str, str], out: int | IO[bytes]) -> subprocess.Popen:
    """``command`` in a fresh interpreter with ``fd`` passed as its last argument, its output to ``out``."""
    return subprocess.Popen(
        [*command, str(fd)], pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
    )


class Zygote:
    """The auditor's side of a zygote: asks it to fork workers and learns their process ids and exit statuses."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = _interpreter(command, theirs.fileno(), env, subprocess.DEVNULL)
        theirs.close()
        self.lost = False  #: the zygote died: its workers too (they die with their parent)
        self._unborn: deque[ForkedWorker] = deque()  #: asked for, in order, not yet told their process ids
        self._living: dict[int, ForkedWorker] = {}

    def fork(self, fd: int, env: dict[str, str], log: str) -> ForkedWorker:
        """Ask for a worker on ``fd`` (the zygote reads the request once it has loaded: this does not wait)."""
        message = pickle.dumps((env, os.getcwd(), log))
        socket.send_fds(self.sock, [message], [fd])
        worker = ForkedWorker(self)
        self._unborn.append(worker)
        return worker

    def listen(self, timeout: float | None) -> bool:
        """Read one message from the zygote within ``timeout`` seconds (None: as long as it takes): a worker's
        process id or its exit status. False when none came."""
        if self.lost or not select.select([self.sock], [], [], timeout)[0]:
            return False
        data = self.sock.recv(MESSAGE_BYTES)
        if not data:  # the zygote died, and every worker with it (the kernel kills them: see die_with_parent)
            self.close()
            for worker in (*self._unborn, *self._living.values()):
                worker.returncode = -signal.SIGKILL
            self._unborn.clear()
            self._living.clear()
            return True
        what, pid, *status = pickle.loads(data)  # (the zygote is normcheck's own process)
        if what == "pid":
            worker = self._unborn.popleft()
            worker.pid = pid
            self._living[pid] = worker
        else:
            self._living.pop(pid).returncode = status[0]
        return True

    def close(self) -> None:
        """Stop the zygote at once (its workers with it) and reap it."""
        self.lost = True
        self.sock.close()
        self.process.kill()
        self.process.wait()


class ForkedWorker:
    """A worker forked by a zygote, watched as :class:`subprocess.Popen` watches its child."""

    def __init__(self, zygote: Zygote) -> None:
        self.zygote = zygote
        self.pid: int | None = None
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit status, or None while the worker runs."""
        while self.returncode is None and self.zygote.listen(0):
            pass
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """The exit status once the worker has exited; :class:`subprocess.TimeoutExpired` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.zygote.listen(left):
                raise subprocess.TimeoutExpired("normcheck worker", timeout or 0.0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the worker, unless it has exited (its process id may belong to another by then)."""
        while self.pid is None and self.returncode is None and self.zygote.listen(START_TIMEOUT):
            pass
        if self.poll() is None and self.pid is not None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as :meth:`subprocess.Popen.kill`."""
        self.send_signal(signal.SIGKILL)


def serve(fd: int, worker_main: Callable[[int], None]) -> None:
    """The zygote's loop on ``fd`` (its socket to the auditor): fork a worker that runs ``worker_main`` on the
    socket each request brings, report its process id and, when it exits, its status; end with the auditor."""
    sock = socket.socket(fileno=fd)
    watched: dict[int, int] = {}  #: pidfd -> process id
    zygote = os.getpid()
    while True:
        ready = select.select([fd, *watched], [], [])[0]
        for pidfd in (r for r in ready if r in watched):
            pid = watched.pop(pidfd)
            os.close(pidfd)
            _, status = os.waitpid(pid, 0)
            sock.send(pickle.dumps(("exit", pid, os.waitstatus_to_exitcode(status))))
        if fd not in ready:
            continue
        data, fds, _, _ = socket.recv_fds(sock, MESSAGE_BYTES, 1)
        if not data:
            return  # the auditor is done (its workers die with this process)
        env, cwd, log = pickle.loads(data)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            sock.close()
            for pidfd in watched:
                os.close(pidfd)
            _run_worker(worker_main, fds[0], env, cwd, log, zygote)
        os.close(fds[0])
        watched[os.pidfd_open(pid)] = pid
        sock.send(pickle.dumps(("pid", pid)))


def die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (a zygote's, the auditor; a worker's, the
    auditor or its zygote), even if it is stuck in C."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _run_worker(
    worker_main: Callable[[int], None], fd: int, env: dict[str, str], cwd: str, log: str, zygote: int
) -> None:
    """In a forked worker: the auditor's environment and working directory, output to ``log``, then the worker
    (which dies with the zygote, as the zygote with the auditor: the auditor learns so when the zygote goes)."""
    code = 1
    try:
        die_with_parent()
        if os.getppid() != zygote:  # the zygote died before this worker could ask to die with it
            return
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        worker_main(fd)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:  # never back into the zygote's loop
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


_ZYGOTES: dict[tuple[tuple[str, str], ...], Zygote] = {}


@atexit.register
def _close_zygotes() -> None:
    for zygote in _ZYGOTES.values():
        zygote.close()

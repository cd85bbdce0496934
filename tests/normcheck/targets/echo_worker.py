"""A zygote whose workers answer with what they run in (tests/normcheck/test_zygote.py)."""

from __future__ import annotations

import os
import signal
import sys
from multiprocessing.connection import Connection

from normcheck.target.zygote import serve


def echo(fd: int) -> None:
    """Send (working directory, $NORMCHECK_ECHO, parent's process id), then obey: ``segv`` or ``exit N``."""
    conn = Connection(fd)
    conn.send((os.getcwd(), os.environ.get("NORMCHECK_ECHO"), os.getppid()))
    while True:
        try:
            order = conn.recv()
        except EOFError:
            return
        if order == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        raise SystemExit(int(order.split()[1]))


def main() -> None:
    serve(int(sys.argv[-1]), echo)

"""Waiting until every process of a group listens on their shared port (SO_REUSEPORT).

A connection that succeeds proves only that one of them listens: the kernel hands it to
any. Which processes hold a listening socket on the port is read from /proc instead
(Linux, where SO_REUSEPORT spreads connections); elsewhere a connection is the test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Sequence

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTEN = "0A"


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in _TABLES:
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _holds(pid: int, inodes: set[str]) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def _connects(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_listening(procs: Sequence[subprocess.Popen], port: int, *, host: str = "127.0.0.1",
                   timeout: float = 60.0, what: str = "server") -> None:
    """Return once every process in ``procs`` listens on ``port``; raise ``RuntimeError`` if
    one exits first or ``timeout`` passes."""
    by_proc = os.path.exists(_TABLES[0])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"{what} exited at start (codes {[p.poll() for p in procs]})")
        if by_proc:
            inodes = _listening_inodes(port)
            if inodes and all(_holds(p.pid, inodes) for p in procs):
                return
        elif _connects(host, port):
            return
        time.sleep(0.05)  # polling a condition, at a short interval
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:g} s")

"""What the tests that start `caas-sim up` in another process share."""

from __future__ import annotations

import contextlib
import os
import random
import re
import socket
import subprocess
from collections.abc import Collection

from caas_sim import catalogue

_ROW = re.compile(r"^([a-z][\w-]*)\s+(http://\S+)")


def free_port_base(offsets: list[int]) -> int:
    """A base B whose B + offset ports are all free now, below the ephemeral range (no port
    the kernel hands out for a connection can take them meanwhile); chosen at random, as
    tests run in parallel."""
    pick = random.Random(os.urandom(8))
    for _ in range(200):
        base = pick.randrange(10000, 32500)
        try:
            with contextlib.ExitStack() as held:
                for offset in offsets:
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


#: The rows of the services themselves: the core and the simulators (not the sink or the dashboard).
SERVICES = ("core", *catalogue.NAMES)


def read_start_table(proc: subprocess.Popen, *needed: str, among: Collection[str] | None = None) -> dict[str, str]:
    """The URL of each row of `up`'s start table (of the rows ``among`` names, if given), read
    up to the clock line it prints once everything listens; ``needed`` rows must be there
    (the output so far says why not)."""
    urls, lines = {}, []
    for line in proc.stdout:
        lines.append(line)
        found = _ROW.match(line)
        if found and (among is None or found.group(1) in among):
            urls[found.group(1)] = found.group(2)
        if line.startswith("clock "):
            break
    assert set(needed) <= set(urls), "".join(lines)
    return urls

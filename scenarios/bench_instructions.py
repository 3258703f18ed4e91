"""Instructions per request, counted by valgrind's callgrind: ``caas-sim bench sim --instructions``.

On a shared machine the CPU a request costs drifts by half between runs of the same code;
the instructions a server executes for it do not (runs agree within 0.2 %, whatever else
the machine is doing: ids and hashes differ per process). Each server runs alone under callgrind (some fifty times slower), answers
a warm-up, has its counters zeroed, answers ``requests`` more, and has them dumped: what it
executed for those requests and nothing else (start-up and imports left out). User space
only: the kernel's share of a request (its socket calls) is left out, and is the same for
every server measured here. Instructions are not time either: a cache miss costs more than
an instruction, which is why a ratio of instructions reads higher than one of CPU time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from . import bench_client
from .bench_measure import free_port
from .listening import wait_listening

#: Requests counted, and answered before counting starts (connections opened, caches warm).
REQUESTS, WARM_UP = 1000, 200
#: Seconds a server may take to start under callgrind.
START_TIMEOUT = 600.0
TOOLS = ("valgrind", "callgrind_control")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def per_request(kind: str, args: Sequence[str], make: Callable[[str], bench_client.RequestMaker],
                expected: set[int], *, requests: int = REQUESTS, warm_up: int = WARM_UP) -> float:
    """Instructions the bench server ``--kind kind *args`` executes per request of ``make``."""
    with tempfile.TemporaryDirectory(prefix="caas-callgrind-") as folder:
        out = Path(folder) / "callgrind.out"
        port = free_port()
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
                   "caas_sim.scenarios.bench_server", "--kind", kind, "--port", str(port), *args]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening([server], port, timeout=START_TIMEOUT, what=f"{kind} under callgrind")
            url = f"http://127.0.0.1:{port}"
            maker = make(url)
            bench_client.run_blocking(url, maker, duration=3600.0, connections=8, total=warm_up)
            _control("--zero", server.pid)
            result = bench_client.run_blocking(url, maker, duration=3600.0, connections=8, total=requests)
            _control("--dump", server.pid)
        finally:
            server.terminate()
            server.wait()
        errors = result.errors(expected)
        if errors:
            raise RuntimeError(f"{kind} {' '.join(args)}: {errors} unexpected answers under callgrind "
                               f"({result.statuses})")
        return total_instructions(next(Path(folder).glob("callgrind.out.*")).read_text()) / result.requests


def total_instructions(dump: str) -> int:
    """The instructions a callgrind dump counted (its ``summary:`` or ``totals:`` line)."""
    found = re.search(r"^(?:summary|totals): (\d+)", dump, re.MULTILINE)
    if found is None:
        raise ValueError("not a callgrind dump: no summary or totals line")
    return int(found.group(1))


def _control(option: str, pid: int) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True, timeout=120)

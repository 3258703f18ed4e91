"""What every measure of ``caas-sim bench`` is made of: server processes, rounds, ratios.

A ``Servers`` runs bench servers (``bench_server``) alone in their processes; a ``Round``
is one load on them (requests, seconds, server CPU read from /proc, unexpected answers);
a ``Comparison`` is one line of the summary: a subject against its baseline, as
throughput and capacity ratios, with the target it must meet.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from . import bench_client
from .listening import wait_listening

#: The ratio each measure must reach (None: reported, no target).
TARGETS = {"sim": 0.7, "webhooks": 0.5, "scaleout": 1.3,
           # ingest + process vs bare POST; processing vs ingestion (at least half of what it accepts);
           # OTA end to end vs the ceiling HTTP alone sets (capacity only: the ceiling is computed)
           "webhooks+jobs": 0.25, "processing": 0.5, "ota/ceiling": 0.5}


@dataclass
class Round:
    kind: str
    requests: int
    seconds: float
    cpu_seconds: float
    errors: int
    #: Share of the whole machine's CPU left idle during the round (load generator, database
    #: and everything else running): what another server process could still have used.
    idle: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / max(1, self.requests) * 1e6


@dataclass
class Comparison:
    """One line of the summary: a subject against its baseline."""
    name: str
    subject: str
    baseline: str
    subject_rps: float
    baseline_rps: float
    target: float | None
    subject_cpu: float | None = None  # µs of server CPU per request
    baseline_cpu: float | None = None
    notes: list[str] = field(default_factory=list)
    latency_met: bool = True  # a latency target of the line (in its notes), if any, holds
    capacity_only: bool = False  # the baseline is computed, not a measured rate: only capacity counts

    @property
    def throughput_ratio(self) -> float:
        return self.subject_rps / self.baseline_rps if self.baseline_rps else 0.0

    @property
    def capacity_ratio(self) -> float | None:
        if not self.subject_cpu or not self.baseline_cpu:
            return None
        return self.baseline_cpu / self.subject_cpu

    @property
    def met(self) -> bool:
        if not self.latency_met:
            return False
        if self.target is None:
            return True
        best = max(0.0 if self.capacity_only else self.throughput_ratio, self.capacity_ratio or 0.0)
        return best >= self.target


# --- servers ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of process ``pid`` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float | None:
    """User plus system CPU so far of every process named ``postgres`` on this machine (a
    local server: its backends and helpers), or None when none runs here. A backend that
    exits takes its CPU with it: read it around work on kept connections."""
    total, found = 0.0, False
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if not f.read().startswith("postgres"):
                    continue
            total += cpu_seconds(int(pid))
        except OSError:  # gone meanwhile
            continue
        found = True
    return total if found else None


class Servers:
    """``count`` bench servers of one kind on one port (SO_REUSEPORT when several)."""

    def __init__(self, kind: str, *args: str, count: int = 1) -> None:
        self.port = free_port()
        extra = ["--reuse-port"] if count > 1 else []
        command = [sys.executable, "-m", "caas_sim.scenarios.bench_server", "--kind", kind, "--port", str(self.port),
                   *extra, *args]
        self.procs = [subprocess.Popen(command)]
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            wait_listening(self.procs, self.port, what=kind)  # the first creates the tables: no race on a fresh database
            self.procs += [subprocess.Popen(command) for _ in range(count - 1)]
            wait_listening(self.procs, self.port, what=kind)
        except BaseException:
            self.stop()
            raise

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- load ------------------------------------------------------------------------------
def post_maker(url: str, path: str, bodies: list[bytes], headers: dict[str, str] | None = None
               ) -> bench_client.RequestMaker:
    host = url.split("//", 1)[1]
    prebuilt = [bench_client.http_request("POST", host, path, b, headers) for b in bodies]
    return lambda n: prebuilt[n % len(prebuilt)]


def load_round(servers: Servers, make: Callable[[str], bench_client.RequestMaker], duration: float,
               connections: int, expected: set[int], kind: str, drain: Callable[[], None] | None = None) -> Round:
    """A warm-up, then ``duration`` seconds of load on ``servers``. ``drain``: waits until
    the servers have finished the work the load left queued; its time and CPU count, so
    that a figure is per request handled, not per request accepted."""
    maker = make(servers.url)
    bench_client.run_blocking(servers.url, maker, duration=min(1.0, duration / 3), connections=connections)  # warm-up
    if drain:
        drain()
    cpu0, machine0 = servers.cpu(), machine_cpu()
    result = bench_client.run_blocking(servers.url, maker, duration=duration, connections=connections)
    seconds = result.seconds
    if drain:
        started = time.perf_counter()
        drain()
        seconds += time.perf_counter() - started
    (idle0, total0), (idle1, total1) = machine0, machine_cpu()
    return Round(kind, result.requests, seconds, servers.cpu() - cpu0, result.errors(expected),
                 idle=(idle1 - idle0) / (total1 - total0) if total1 > total0 else None)


def machine_cpu() -> tuple[float, float]:
    """(idle, all) CPU time of the whole machine so far, in clock ticks (Linux /proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [float(x) for x in f.readline().split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)  # idle and iowait


def print_round(n: int, r: Round) -> None:
    idle = f"  machine idle {r.idle:4.0%}" if r.idle is not None else ""
    print(f"  round {n + 1} {r.kind:<14}: {r.rps:9.0f} req/s  {r.cpu_us_per_request:7.1f} µs CPU/req  "
          f"errors {r.errors}{idle}", flush=True)


def compare(name: str, results: dict[str, list[Round]], subject: str, baseline: str,
            target: float | None) -> Comparison:
    """The medians of ``subject``'s rounds against ``baseline``'s; any unexpected answer
    voids the line (a figure of errors answered fast is no figure)."""
    rps = {k: statistics.median(r.rps for r in rs) for k, rs in results.items()}
    cpu = {k: statistics.median(r.cpu_us_per_request for r in rs) for k, rs in results.items()}
    comparison = Comparison(name, subject, baseline, rps[subject], rps[baseline], target, cpu[subject], cpu[baseline])
    errors = sum(r.errors for rs in results.values() for r in rs)
    if errors:
        comparison.notes.append(f"{errors} unexpected answers: the figures are not comparable")
        comparison.target = comparison.target if comparison.target is not None else 0.0
        comparison.subject_rps = 0.0
    return comparison


# --- the summary ---------------------------------------------------------------------------
def print_summary(comparisons: list[Comparison]) -> None:
    print()
    print(f"{'measure':<20}{'subject':>14}{'req/s':>10}{'baseline':>14}{'req/s':>10}"
          f"{'throughput':>12}{'capacity':>10}{'target':>8}  verdict")
    for c in comparisons:
        capacity = f"{c.capacity_ratio:.2f}" if c.capacity_ratio is not None else "-"
        target = f">={c.target:g}" if c.target is not None else "-"
        verdict = "ok" if c.met else "MISSED"
        if c.target is None:
            verdict = "(reported)"
        throughput = "-" if c.capacity_only else f"{c.throughput_ratio:.2f}"
        baseline_rps = "-" if c.capacity_only else f"{c.baseline_rps:.0f}"
        print(f"{c.name:<20}{c.subject:>14}{c.subject_rps:>10.0f}{c.baseline:>14}{baseline_rps:>10}"
              f"{throughput:>12}{capacity:>10}{target:>8}  {verdict}")
    for c in comparisons:
        for note in c.notes:
            print(f"  {c.name}: {note}")
    print("throughput = subject req/s / baseline req/s; capacity = baseline CPU per request / subject CPU "
          "per request (the robust figure on a shared machine). A target is met when either ratio reaches it.")

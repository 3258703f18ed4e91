"""``caas-sim bench``: throughput of the simulators and the core against bare aiohttp.

Every figure is measured in the same run, on the same machine, against a bare
baseline, in alternating rounds, and printed with its ratio and target:

- ``sim``: ``POST /ota/activate`` on the IoT simulator with the kit on (contract
  validation in and out, fault matching with no rule, idempotency, journal, busy
  accounting) against a bare aiohttp handler calling the same model (target 0.7); an
  ``echo`` handler (no model) is the floor;
- ``webhooks``: webhook ingestion on one core process (Standard Webhooks signature
  check, durable dedupe, inbox row and processing job committed, 204) against a bare
  aiohttp JSON POST handler (target 0.5);
- ``ota``: end-to-end OTA activations per second (purchase accepted, payment, OTA
  attempt, the simulator's signed ACTIVATED callback ingested and processed) against
  bare POST requests per second (target 0.1);
- ``scaleout``: webhook ingestion of two core processes on one PostgreSQL against one.

Each server runs alone in a process. Two figures per variant: requests/s under load,
and server CPU per request (read from /proc). The CPU figure is the robust one: it does
not depend on whether the load generator or the server saturates first on a shared
machine. The load comes from wrk for ``sim`` when it is installed, otherwise (and for
signed webhooks, which wrk cannot sign) from ``bench_client``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

import orjson

from simulators.iot.fleet import ConnectivityKind, Fleet

from . import bench_client
from .bench_server import BENCH_KEY, post_app
from .listening import wait_listening

TARGETS = {"sim": 0.7, "webhooks": 0.5, "ota": 0.1, "scaleout": None}
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@dataclass
class Round:
    kind: str
    requests: int
    seconds: float
    cpu_seconds: float
    errors: int

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
        if self.target is None:
            return True
        best = max(self.throughput_ratio, self.capacity_ratio or 0.0)
        return best >= self.target


# --- servers ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Servers:
    """``count`` bench servers of one kind on one port (SO_REUSEPORT when several)."""

    def __init__(self, kind: str, *args: str, count: int = 1) -> None:
        self.port = _free_port()
        extra = ["--reuse-port"] if count > 1 else []
        command = [sys.executable, "-m", "scenarios.bench_server", "--kind", kind, "--port", str(self.port),
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
        return sum(_cpu_seconds(p.pid) for p in self.procs)

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
def _activation_bodies(count: int = 16) -> list[bytes]:
    fleet = Fleet(0)
    return [orjson.dumps({"vin": fleet.vin_at(i * 7919), "serviceId": "perf-boost",
                          "configuration": {"featureFlags": ["performance_boost"], "parameters": {"power_kw": 30}},
                          "duration": {"type": "PERMANENT"}}) for i in range(count)]


def _wrk(url: str, path: str, duration: float, connections: int, bodies: list[bytes]) -> tuple[int, float, int]:
    lua = "bodies = {" + ",".join("[[" + b.decode() + "]]" for b in bodies) + "}\n" + f"""
i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "{path}", {{["Content-Type"] = "application/json"}}, bodies[i])
end
""" + """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %f %d\\n", summary.requests, summary.duration / 1e6,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "-s", f.name, url],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    line = next(l for l in out.splitlines() if l.startswith("RESULT"))
    requests, seconds, errors = line.split()[1:]
    return int(requests), float(seconds), int(errors)


def post_maker(url: str, path: str, bodies: list[bytes], headers: dict[str, str] | None = None
               ) -> bench_client.RequestMaker:
    host = url.split("//", 1)[1]
    prebuilt = [bench_client.http_request("POST", host, path, b, headers) for b in bodies]
    return lambda n: prebuilt[n % len(prebuilt)]


def webhook_maker(url: str, path: str, secret: str, template: dict, *, prefix: str | None = None
                  ) -> bench_client.RequestMaker:
    """Signed Standard Webhooks, each with a webhook-id never sent before."""
    host = url.split("//", 1)[1]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    prefix = prefix or f"msg_{uuid.uuid4().hex[:12]}"

    def make(n: int) -> bytes:
        webhook_id, timestamp = f"{prefix}_{n}", str(int(time.time()))
        body = orjson.dumps({**template, "requestId": f"ota_bench{n:012d}"})
        signature = base64.b64encode(hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body,
                                              hashlib.sha256).digest()).decode()
        return bench_client.http_request("POST", host, path, body, {
            "webhook-id": webhook_id, "webhook-timestamp": timestamp, "webhook-signature": f"v1,{signature}"})

    return make


def _load(servers: Servers, make: Callable[[str], bench_client.RequestMaker], duration: float, connections: int,
          expected: set[int], kind: str, drain: Callable[[], None] | None = None) -> Round:
    """``drain``: waits until the servers have finished the work the load left queued; its
    time and CPU count, so that a figure is per request handled, not per request accepted."""
    maker = make(servers.url)
    bench_client.run_blocking(servers.url, maker, duration=min(1.0, duration / 3), connections=connections)  # warm-up
    if drain:
        drain()
    cpu0 = servers.cpu()
    result = bench_client.run_blocking(servers.url, maker, duration=duration, connections=connections)
    seconds = result.seconds
    if drain:
        started = time.perf_counter()
        drain()
        seconds += time.perf_counter() - started
    return Round(kind, result.requests, seconds, servers.cpu() - cpu0, result.errors(expected))


def _print_round(n: int, r: Round) -> None:
    print(f"  round {n + 1} {r.kind:<14}: {r.rps:9.0f} req/s  {r.cpu_us_per_request:7.1f} µs CPU/req  "
          f"errors {r.errors}", flush=True)


def _compare(name: str, results: dict[str, list[Round]], subject: str, baseline: str,
             target: float | None) -> Comparison:
    rps = {k: statistics.median(r.rps for r in rs) for k, rs in results.items()}
    cpu = {k: statistics.median(r.cpu_us_per_request for r in rs) for k, rs in results.items()}
    comparison = Comparison(name, subject, baseline, rps[subject], rps[baseline], target, cpu[subject], cpu[baseline])
    errors = sum(r.errors for rs in results.values() for r in rs)
    if errors:
        comparison.notes.append(f"{errors} unexpected answers: the figures are not comparable")
        comparison.target = comparison.target if comparison.target is not None else 0.0
        comparison.subject_rps = 0.0
    return comparison


# --- the benchmarks ----------------------------------------------------------------------
def bench_sim(duration: float, connections: int, rounds: int) -> Comparison:
    use_wrk = shutil.which("wrk") is not None
    bodies = _activation_bodies()
    print(f"sim: POST /ota/activate, kit vs bare vs echo, load from {'wrk' if use_wrk else 'bench_client'}")
    results: dict[str, list[Round]] = {"echo": [], "bare": [], "kit": []}
    for n in range(rounds):
        for kind, rounds_of_kind in results.items():
            with Servers(kind) as servers:
                if use_wrk:
                    _wrk(servers.url, "/ota/activate", min(1.0, duration / 3), connections, bodies)
                    cpu0 = servers.cpu()
                    requests, seconds, errors = _wrk(servers.url, "/ota/activate", duration, connections, bodies)
                    r = Round(kind, requests, seconds, servers.cpu() - cpu0, errors)
                else:
                    r = _load(servers, lambda url: post_maker(url, "/ota/activate", bodies), duration, connections,
                              {202}, kind)
            rounds_of_kind.append(r)
            _print_round(n, r)
    comparison = _compare("IoT activation", results, "kit", "bare", TARGETS["sim"])
    comparison.notes.append(f"kit/echo (model included): throughput "
                            f"{comparison.subject_rps / statistics.median(r.rps for r in results['echo']):.2f}")
    return comparison


OTA_STATUS = {"vin": Fleet(0).vin_at(42), "serviceId": "heated-seats", "status": "ACTIVATED", "errorCode": None,
              "timestamp": "2026-01-05T08:00:42.000Z"}


def _webhook_round(kind: str, database: str | None, duration: float, connections: int, *, count: int = 1,
                   no_jobs: bool = False) -> Round:
    from caas_core.settings import DEVELOPMENT_SECRET

    if kind == "post":
        args: tuple[str, ...] = ()
    else:
        args = ("--database", database, *(["--no-jobs"] if no_jobs else []))
    processing = kind != "post" and not no_jobs
    with Servers("post" if kind == "post" else "core", *args, count=count) as servers:
        return _load(servers, lambda url: webhook_maker(url, "/caas/webhooks/ota-status", DEVELOPMENT_SECRET,
                                                        OTA_STATUS), duration, connections, {204}, kind,
                     drain=(lambda: _until_processed(database)) if processing else None)


def _until_processed(database: str, timeout: float = 120.0) -> None:
    """Wait until every webhook in the inbox is processed (the jobs the load queued ran)."""
    from sqlalchemy import func, select

    from caas_core.store.db import Database
    from caas_core.store.schema import webhook_inbox

    async def unprocessed() -> int:
        async with await Database.open(database, create=False) as db, db.transaction(readonly=True) as conn:
            return int(await conn.scalar(select(func.count()).select_from(webhook_inbox).where(
                webhook_inbox.c.processed_at.is_(None))))

    deadline = time.monotonic() + timeout
    while asyncio.run(unprocessed()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"webhooks still unprocessed after {timeout:g} s")
        time.sleep(0.05)  # polling the queue's state


def bench_webhooks(duration: float, connections: int, rounds: int) -> list[Comparison]:
    """Ingestion (signature, durable dedupe, inbox row and job committed, 204) on a core process
    that leaves the jobs to others (``--no-jobs``: the ingestion node of a scale-out), the
    issue's measure; and, reported beside it, one process that also processes every job."""
    print("webhooks: POST /caas/webhooks/ota-status (signed, each id new) on one core process (SQLite file), "
          "ingesting only, and ingesting + processing the jobs, vs a bare aiohttp JSON POST")
    results: dict[str, list[Round]] = {"post": [], "core": [], "core+jobs": []}
    with tempfile.TemporaryDirectory(prefix="caas-bench-") as tmp:
        for n in range(rounds):
            for kind, rounds_of_kind in results.items():
                database = f"sqlite+aiosqlite:///{tmp}/round{n}-{kind}.db"
                r = _webhook_round(kind.removesuffix("+jobs"), database, duration, connections,
                                   no_jobs=kind == "core")
                r.kind = kind
                rounds_of_kind.append(r)
                _print_round(n, r)
    ingestion = _compare("webhook ingestion", {k: results[k] for k in ("post", "core")}, "core", "post",
                         TARGETS["webhooks"])
    processing = _compare("ingest + process", {k: results[k] for k in ("post", "core+jobs")}, "core+jobs", "post",
                          None)
    processing.notes.append("the same process also runs each webhook's ota.outcome job (claim, look-up, complete); "
                            "timed until the queue is drained")
    return [ingestion, processing]


class PostgresDatabase:
    """A throw-away database on the PostgreSQL server (created and dropped here)."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.name = f"caas_bench_{uuid.uuid4().hex[:10]}"
        base = server_url.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"

    async def _admin(self, sql: str) -> None:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        from caas_core.store.db import _parse

        engine = create_async_engine(_parse(self.server_url), isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    def __enter__(self) -> Self:
        asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


def bench_scaleout(duration: float, connections: int, rounds: int, postgres: str) -> Comparison:
    print(f"scaleout: webhook ingestion (jobs processed too) by 1 and 2 core processes on PostgreSQL "
          f"({postgres.split('@')[-1]})")
    results: dict[str, list[Round]] = {"1 process": [], "2 processes": []}
    for n in range(rounds):
        for kind, rounds_of_kind in results.items():
            with PostgresDatabase(postgres) as db:
                r = _webhook_round(kind, db.url, duration, connections, count=1 if kind == "1 process" else 2)
            rounds_of_kind.append(r)
            _print_round(n, r)
    comparison = _compare("2 core processes", results, "2 processes", "1 process", TARGETS["scaleout"])
    comparison.notes.append(f"{os.cpu_count()} CPUs on this machine, load generator and PostgreSQL included")
    return comparison


def _always_online_vins(count: int, seed: int = 0) -> list[str]:
    fleet = Fleet(seed)
    vins = []
    for index in itertools.count(1000):
        profile = fleet.profile_at(index)
        if profile.connectivity is ConnectivityKind.ALWAYS_ONLINE and profile.magic is None:
            vins.append(profile.vin)
            if len(vins) == count:
                return vins
    raise AssertionError("unreachable")


async def _activation_latencies(database: str, scale: float) -> list[float]:
    """Real seconds from purchase accepted to ACTIVE, of each delivered purchase."""
    from sqlalchemy import select

    from caas_core.store.db import Database
    from caas_core.store.schema import purchases

    async with await Database.open(database, create=False) as db, db.transaction(readonly=True) as conn:
        rows = (await conn.execute(select(purchases.c.created_at, purchases.c.delivered_at).where(
            purchases.c.delivered_at.is_not(None)))).all()
    return sorted((delivered - created) / scale for created, delivered in rows)


async def _count_active(database: str) -> int:
    from sqlalchemy import func, select

    from caas_core.store.db import Database
    from caas_core.store.schema import purchases

    async with await Database.open(database, create=False) as db, db.transaction(readonly=True) as conn:
        return int(await conn.scalar(select(func.count()).select_from(purchases).where(
            purchases.c.status == "ACTIVE")))


#: The HTTP exchanges between the stack's own services per activation, besides the purchase
#: request itself: the charge, the OTA push and the status callback.
OTA_EXCHANGES = 3


def exchange_cpu(connections: int, requests: int = 4000) -> float:
    """µs of CPU of one HTTP exchange between two services of one process, as in the
    bench's stack: aiohttp's client (what the core and the simulators call each other
    with) and the bare aiohttp JSON POST handler on one event loop, client and server
    together. The unit an OTA activation is made of, measured on this machine."""
    import aiohttp
    from aiohttp import web

    body = orjson.dumps(OTA_STATUS)

    async def measure() -> float:
        runner = web.AppRunner(post_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/x"
        try:
            async with aiohttp.ClientSession() as session:
                async def worker(count: int) -> None:
                    for _ in range(count):
                        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as answer:
                            await answer.read()

                per_worker = requests // connections
                await asyncio.gather(*(worker(per_worker // 4) for _ in range(connections)))  # warm-up
                started = time.process_time()
                await asyncio.gather(*(worker(per_worker) for _ in range(connections)))
                return (time.process_time() - started) / (per_worker * connections) * 1e6
        finally:
            await runner.cleanup()

    with asyncio.Runner(loop_factory=bench_client.loop_factory()) as runner:
        return runner.run(measure())


def bench_ota(purchases: int, connections: int, postgres: str, baseline_rps: float, baseline_cpu: float | None, *,
              scale: float = 20.0, timeout: float = 120.0) -> Comparison:
    """``purchases`` sales of heated seats (no maintenance gate) on always-online vehicles,
    sent over ``connections``; the rate is purchases / time until the last is ACTIVE."""
    print(f"ota: {purchases} purchases to ACTIVE through the whole stack (core on PostgreSQL, IoT, payments and "
          f"VSS simulators in one process, clock scaled:{scale:g})")
    vins = _always_online_vins(purchases)
    body = orjson.dumps({"serviceId": "heated-seats", "durationType": "PERMANENT",
                         "paymentMethod": {"type": "CARD", "token": "pm_card_visa"}})
    with PostgresDatabase(postgres) as db, \
            Servers("stack", "--database", db.url, "--clock", f"scaled:{scale:g}") as servers:
        host = servers.url.split("//", 1)[1]
        requests = [bench_client.http_request(
            "POST", host, f"/customers/c-1/vehicles/{vin}/purchases", body,
            {"Authorization": f"Bearer {BENCH_KEY}"}) for vin in vins]
        cpu0 = servers.cpu()
        started = time.perf_counter()
        sent = bench_client.run_blocking(servers.url, lambda n: requests[n] if n < len(requests) else b"",
                                         duration=timeout, connections=connections, total=len(requests))
        accepted = sent.statuses.get(201, 0)
        sending = time.perf_counter() - started
        active = 0
        while time.perf_counter() - started < timeout:
            active = asyncio.run(_count_active(db.url))
            if active >= accepted:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        cpu = servers.cpu() - cpu0
        latencies = asyncio.run(_activation_latencies(db.url, scale))
    comparison = Comparison("OTA end to end", "activations", "bare POST", active / elapsed, baseline_rps,
                            TARGETS["ota"], subject_cpu=cpu / max(1, active) * 1e6, baseline_cpu=baseline_cpu)
    comparison.notes.append(f"{accepted}/{purchases} purchases accepted (201), {active} ACTIVE after "
                            f"{elapsed:.1f} s; {comparison.subject_cpu:.0f} µs of stack CPU per activation")
    if latencies:
        comparison.notes.append(
            f"purchases sent in {sending:.1f} s ({accepted / sending:.0f}/s); purchase to ACTIVE (real s): median "
            f"{statistics.median(latencies):.2f}, p95 {latencies[int(len(latencies) * 0.95)]:.2f}, "
            f"max {latencies[-1]:.2f}")
    if sent.errors({201}):
        comparison.notes.append(f"answers other than 201: {sent.statuses}")
    if baseline_cpu:
        exchange = exchange_cpu(connections)
        comparison.notes.append(
            f"ceiling of HTTP alone: one aiohttp client-to-server exchange costs {exchange:.0f} µs of CPU here; an "
            f"activation's purchase plus its {OTA_EXCHANGES} exchanges, with no database and no logic, would reach "
            f"capacity {baseline_cpu / (baseline_cpu + OTA_EXCHANGES * exchange):.2f}")
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
        print(f"{c.name:<20}{c.subject:>14}{c.subject_rps:>10.0f}{c.baseline:>14}{c.baseline_rps:>10.0f}"
              f"{c.throughput_ratio:>12.2f}{capacity:>10}{target:>8}  {verdict}")
    for c in comparisons:
        for note in c.notes:
            print(f"  {c.name}: {note}")
    print("throughput = subject req/s / baseline req/s; capacity = baseline CPU per request / subject CPU "
          "per request (the robust figure on a shared machine). A target is met when either ratio reaches it.")


def main(which: str = "all", duration: float = 5.0, connections: int = 32, rounds: int = 3,
         postgres: str = DEFAULT_POSTGRES, purchases: int = 1000) -> int:
    comparisons: list[Comparison] = []
    if which in ("all", "webhooks"):
        comparisons.extend(bench_webhooks(duration, connections, rounds))
    if which in ("all", "sim"):
        comparisons.append(bench_sim(duration, connections, rounds))
    if which in ("all", "ota"):
        baseline = next(((c.baseline_rps, c.baseline_cpu) for c in comparisons if c.baseline == "post"), None)
        if baseline is None:
            print("ota: measuring the bare POST baseline first")
            posts = [_webhook_round("post", None, duration, connections) for _ in range(rounds)]
            baseline = (statistics.median(r.rps for r in posts), statistics.median(r.cpu_us_per_request for r in posts))
        comparisons.append(bench_ota(purchases, connections, postgres, *baseline))
    if which in ("all", "scaleout"):
        comparisons.append(bench_scaleout(duration, connections, rounds, postgres))
    print_summary(comparisons)
    return 0 if all(c.met for c in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())

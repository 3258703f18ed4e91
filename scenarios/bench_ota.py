"""``caas-sim bench ota``: OTA activations end to end, and the ceiling HTTP alone sets.

``purchases`` sales of heated seats through the whole stack (the core on PostgreSQL, the
IoT, payments and VSS simulators in one process, the clock scaled), each for a vehicle the
customer already holds (as a delivered sale leaves it): purchase accepted, payment, OTA
attempt, the simulator's signed ACTIVATED callback ingested and processed.
The rate is activations per second until the last is ACTIVE, against bare POST requests
per second; ``exchange_cpu`` measures the unit an activation is made of (one HTTP
exchange between two services of one process) to say what HTTP alone would allow.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time

import orjson

from caas_sim.simulators.fleet import ConnectivityKind, Fleet

from . import bench_client
from .bench_db import (
    PostgresDatabase,
    activation_latencies,
    commit_cpu,
    count_active,
    hold_vehicles,
)
from .bench_measure import TARGETS, Comparison, Servers, postgres_cpu
from .bench_server import BENCH_CUSTOMER, BENCH_KEY, post_app
from .bench_webhooks import OTA_STATUS

#: The HTTP exchanges between the stack's own services per activation, besides the purchase
#: request itself: the charge, the OTA push and the status callback. (A vehicle nobody holds
#: yet would add a fourth, the status read that links it: the bench's vehicles are held.)
OTA_EXCHANGES = 3
#: The steps a durable activation records, each what a crash must not lose before the next:
#: the purchase, its payment, the OTA attempt, the callback's inbox row (before its 2xx) and
#: the outcome. One commit each when none is batched (a core may share the last two among
#: webhooks: the reference core commits 3.3 times per activation, see docs/benchmarks.md).
DURABLE_COMMITS = 5


def always_online_vins(count: int, seed: int = 0) -> list[str]:
    """The first ``count`` vehicles of the fleet that are always online and carry no magic value."""
    fleet = Fleet(seed)
    vins = []
    for index in itertools.count(1000):
        profile = fleet.profile_at(index)
        if profile.connectivity is ConnectivityKind.ALWAYS_ONLINE and profile.magic is None:
            vins.append(profile.vin)
            if len(vins) == count:
                return vins
    raise AssertionError("unreachable")


def exchange_cpu(connections: int, requests: int = 4000) -> float:
    """µs of CPU of one HTTP exchange between two services of one process, as in the
    bench's stack: aiohttp's client (what the core and the simulators call each other
    with) and the bare aiohttp JSON POST handler on one event loop, client and server
    together. The unit an OTA activation is made of, measured on this machine."""
    import aiohttp
    from aiohttp import web

    body = orjson.dumps(OTA_STATUS)

    async def measure() -> float:
        app_runner = web.AppRunner(post_app(), access_log=None)
        await app_runner.setup()
        await web.TCPSite(app_runner, "127.0.0.1", 0).start()
        host, port = app_runner.addresses[0][:2]
        url = f"http://{host}:{port}/x"
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
            await app_runner.cleanup()

    with asyncio.Runner(loop_factory=bench_client.loop_factory()) as runner:
        return runner.run(measure())


def _to_active(url: str, database: str, requests: list[bytes], connections: int, timeout: float,
               active_before: int) -> tuple[bench_client.Result, float, int]:
    """Send ``requests`` (purchases) and wait until every accepted one is ACTIVE: what was
    sent, the seconds sending took, and the purchases that became ACTIVE."""
    started = time.perf_counter()
    sent = bench_client.run_blocking(url, lambda n: requests[n] if n < len(requests) else b"",
                                     duration=timeout, connections=connections, total=len(requests))
    sending = time.perf_counter() - started
    active = 0
    while time.perf_counter() - started < timeout:
        active = count_active(database) - active_before
        if active >= sent.statuses.get(201, 0):
            break
        time.sleep(0.2)
    return sent, sending, active


def bench_ota(purchases: int, connections: int, postgres: str, baseline_rps: float, baseline_cpu: float | None, *,
              scale: float = 20.0, timeout: float = 120.0) -> list[Comparison]:
    """``purchases`` sales of heated seats (no maintenance gate) on always-online vehicles,
    sent over ``connections``; the rate is purchases / time until the last is ACTIVE. Two
    lines: against the bare POST, and against the ceiling HTTP alone sets (the bare POST
    plus the activation's exchanges, measured here, with no database and no logic)."""
    print(f"ota: {purchases} purchases to ACTIVE through the whole stack (core on PostgreSQL, IoT, payments and "
          f"VSS simulators in one process, clock scaled:{scale:g})")
    # A warm-up first, as every other measure has: a cold stack opens its pool's connections
    # and prepares each statement on each of them (981 prepares over 400 activations).
    warm = max(connections * 4, purchases // 4)
    vins = always_online_vins(warm + purchases)
    model = Fleet(0).profile(vins[0]).model
    body = orjson.dumps({"serviceId": "heated-seats", "durationType": "PERMANENT",
                         "paymentMethod": {"type": "CARD", "token": "pm_card_visa"}})
    with PostgresDatabase(postgres) as db, \
            Servers("stack", "--database", db.url, "--clock", f"scaled:{scale:g}") as servers:
        hold_vehicles(db.url, BENCH_CUSTOMER, vins, model)
        host = servers.url.split("//", 1)[1]
        requests = [bench_client.http_request(
            "POST", host, f"/customers/{BENCH_CUSTOMER}/vehicles/{vin}/purchases", body,
            {"Authorization": f"Bearer {BENCH_KEY}"}) for vin in vins]
        _to_active(servers.url, db.url, requests[:warm], connections, timeout, 0)
        cpu0, database0 = servers.cpu(), postgres_cpu()
        started = time.perf_counter()
        sent, sending, active = _to_active(servers.url, db.url, requests[warm:], connections, timeout, warm)
        accepted = sent.statuses.get(201, 0)
        elapsed = time.perf_counter() - started
        cpu, database1 = servers.cpu() - cpu0, postgres_cpu()
        latencies = activation_latencies(db.url, scale)
    # Reported: HTTP alone caps this line near the old target (0.1), so the target is
    # stated against that ceiling, on the line after.
    comparison = Comparison("OTA end to end", "activations", "bare POST", active / elapsed, baseline_rps,
                            None, subject_cpu=cpu / max(1, active) * 1e6, baseline_cpu=baseline_cpu)
    comparison.notes.append(f"{accepted}/{purchases} purchases accepted (201), {active} ACTIVE after "
                            f"{elapsed:.1f} s (after {warm} to warm up); {comparison.subject_cpu:.0f} µs of stack "
                            f"CPU per activation")
    if latencies:
        comparison.notes.append(
            f"purchases sent in {sending:.1f} s ({accepted / sending:.0f}/s); purchase to ACTIVE (real s, warm-up "
            f"included): median {statistics.median(latencies):.2f}, "
            f"p95 {latencies[int(len(latencies) * 0.95)]:.2f}, max {latencies[-1]:.2f}")
    if database0 is not None and database1 is not None:  # a server on this machine
        database_cpu = (database1 - database0) / max(1, active) * 1e6
        comparison.notes.append(f"PostgreSQL's own processes on this machine: {database_cpu:.0f} µs of CPU per "
                                "activation, beside the stack's (not in it)")
    if sent.errors({201}):
        comparison.notes.append(f"answers other than 201: {sent.statuses}")
    if not baseline_cpu:
        return [comparison]
    exchange = exchange_cpu(connections)
    ceiling_cpu = baseline_cpu + OTA_EXCHANGES * exchange
    comparison.notes.append(
        f"ceiling of HTTP alone: one aiohttp client-to-server exchange costs {exchange:.0f} µs of CPU here; an "
        f"activation's purchase plus its {OTA_EXCHANGES} exchanges, with no database and no logic, would reach "
        f"capacity {baseline_cpu / ceiling_cpu:.2f}")
    ceiling = Comparison("OTA / HTTP ceiling", "activations", "HTTP only", comparison.subject_rps, 1e6 / ceiling_cpu,
                         TARGETS["ota/ceiling"], subject_cpu=comparison.subject_cpu, baseline_cpu=ceiling_cpu,
                         capacity_only=True)
    ceiling.notes.append(f"{comparison.subject_cpu:.0f} µs of stack CPU per activation against the {ceiling_cpu:.0f} "
                         f"µs HTTP alone would cost (the bare POST's {baseline_cpu:.0f} + {OTA_EXCHANGES} x "
                         f"{exchange:.0f})")
    with PostgresDatabase(postgres) as db:
        commit = commit_cpu(db.url, connections)
    floor = DURABLE_COMMITS * commit
    ceiling.notes.append(
        f"the database's floor: one single-statement commit through asyncpg alone costs {commit:.0f} µs of client "
        f"CPU here; a durable activation records {DURABLE_COMMITS} steps, a commit each when none is batched "
        f"({floor:.0f} µs), so HTTP and that floor "
        f"alone cost {ceiling_cpu + floor:.0f} µs, {ceiling_cpu / (ceiling_cpu + floor):.2f} of the HTTP ceiling "
        f"(this stack: {(ceiling_cpu + floor) / comparison.subject_cpu:.2f} of that durable ceiling)")
    return [comparison, ceiling]

"""``caas-sim bench webhooks`` and ``scaleout``: the core's webhook ingestion.

- ``webhooks``: signed Standard Webhooks (each id new) on one core process (SQLite
  file): ingesting only (signature check, durable dedupe, inbox row and processing job
  committed, 204), and ingesting plus processing every job, against a bare aiohttp JSON
  POST handler;
- ``scaleout``: the same ingestion, jobs processed too, by two core processes on one
  PostgreSQL database against one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import statistics
import tempfile
import time
import uuid

import orjson

from caas_sim.simulators.fleet import Fleet

from . import bench_client
from .bench_db import PostgresDatabase, pending_jobs, until_processed
from .bench_measure import (
    TARGETS,
    Comparison,
    Round,
    Servers,
    compare,
    load_round,
    print_round,
)

#: The body of every webhook the bench sends (its requestId varies).
OTA_STATUS = {"vin": Fleet(0).vin_at(42), "serviceId": "heated-seats", "status": "ACTIVATED", "errorCode": None,
              "timestamp": "2026-01-05T08:00:42.000Z"}


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


def webhook_round(kind: str, database: str | None, duration: float, connections: int, *, count: int = 1,
                  no_jobs: bool = False) -> Round:
    """One round of signed webhooks on ``count`` servers: ``post`` (the bare baseline) or
    a core on ``database``, timed until its queue is drained when it processes jobs."""
    from caas_core.settings import DEVELOPMENT_SECRET

    if kind == "post":
        args: tuple[str, ...] = ()
    else:
        args = ("--database", database, *(["--no-jobs"] if no_jobs else []))
    processing = kind != "post" and not no_jobs
    with Servers("post" if kind == "post" else "core", *args, count=count) as servers:
        return load_round(servers, lambda url: webhook_maker(url, "/caas/webhooks/ota-status", DEVELOPMENT_SECRET,
                                                             OTA_STATUS), duration, connections, {204}, kind,
                          drain=(lambda: until_processed(database)) if processing else None)


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
                r = webhook_round(kind.removesuffix("+jobs"), database, duration, connections,
                                  no_jobs=kind == "core")
                r.kind = kind
                rounds_of_kind.append(r)
                print_round(n, r)
    ingestion = compare("webhook ingestion", {k: results[k] for k in ("post", "core")}, "core", "post",
                        TARGETS["webhooks"])
    both = compare("ingest + process", {k: results[k] for k in ("post", "core+jobs")}, "core+jobs", "post",
                   TARGETS["webhooks+jobs"])
    both.notes.append("the same process also runs each webhook's ota.outcome job (claim, look-up, complete); "
                      "timed until the queue is drained")
    # Processing against ingestion: webhooks handled per second by a process doing both (it drained
    # the queue, so processing kept that pace) against what ingestion alone accepts; and the CPU
    # of ingestion per webhook against what processing adds to it.
    processing = compare("processing", {"jobs": results["core+jobs"], "ingestion": results["core"]}, "jobs",
                         "ingestion", TARGETS["processing"])
    if processing.subject_cpu and processing.baseline_cpu and processing.subject_cpu > processing.baseline_cpu:
        processing.subject_cpu -= processing.baseline_cpu
    processing.notes.append(f"processing costs {processing.subject_cpu:.0f} µs of CPU per webhook beside "
                            f"ingestion's {processing.baseline_cpu:.0f} µs (capacity: ingestion / processing)")
    return [ingestion, both, processing]


def bench_scaleout(duration: float, connections: int, rounds: int, postgres: str) -> Comparison:
    """Webhooks ingested and processed (timed until drained) by 2 core processes against 1,
    each process offered ``connections`` (the load that saturates one): with the same
    connections shared, each process of two had half the load, half-sized group commits and
    claims, and paid 1.6x the CPU per webhook for it (see docs/benchmarks.md)."""
    print(f"scaleout: webhook ingestion (jobs processed too) by 1 and 2 core processes on PostgreSQL "
          f"({postgres.split('@')[-1]}), {connections} connections per process")
    results: dict[str, list[Round]] = {"1 process": [], "2 processes": []}
    for n in range(rounds):
        for kind, rounds_of_kind in results.items():
            count = 1 if kind == "1 process" else 2
            with PostgresDatabase(postgres) as db:
                r = webhook_round(kind, db.url, duration, connections * count, count=count)
            rounds_of_kind.append(r)
            print_round(n, r)
    comparison = compare("2 core processes", results, "2 processes", "1 process", TARGETS["scaleout"])
    # each round's own pair: a machine whose other load drifts between rounds shows here first
    pairs = [two.rps / one.rps for one, two in zip(results["1 process"], results["2 processes"], strict=True)]
    comparison.notes.append("2 processes / 1, round by round: " + ", ".join(f"{p:.2f}x" for p in pairs))
    idle = [r.idle for r in results["1 process"] if r.idle is not None]
    note = f"{os.cpu_count()} CPUs on this machine, load generator and PostgreSQL included"
    if idle:
        share = statistics.median(idle)
        # what the machine allows: the idle share used at the same machine CPU per webhook
        note += (f"; idle during the 1-process rounds: {share:.0%}, so 2 processes can reach at most "
                 f"{1 / max(0.01, 1 - share):.2f}x here, and only if a webhook costs them no more CPU than it "
                 f"costs one ({comparison.baseline_cpu:.0f} µs; it cost {comparison.subject_cpu:.0f})")
    comparison.notes.append(note)
    return comparison


def overload(duration: float = 20.0, connections: int = 64, bound: int = 2000) -> dict:
    """Backpressure under sustained load: one core (SQLite file, jobs on, ``bound`` as its
    ``CAAS_WEBHOOK_BACKLOG``) under ``connections`` of signed webhooks for ``duration``
    seconds; the queue's depth polled meanwhile, then drained. Prints and returns what was
    accepted (204) and refused (503), the deepest queue seen and what is left unprocessed.
    ``python -c "from caas_sim.scenarios.bench_webhooks import overload; overload(20, 64, 300)"``"""
    import threading

    from caas_core.settings import DEVELOPMENT_SECRET

    from .bench_db import unprocessed_webhooks

    depths: list[int] = []
    done = threading.Event()
    with tempfile.TemporaryDirectory(prefix="caas-bench-") as tmp:
        database = f"sqlite+aiosqlite:///{tmp}/overload.db"
        os.environ["CAAS_WEBHOOK_BACKLOG"] = str(bound)  # read by the core's settings in its process
        try:
            with Servers("core", "--database", database) as servers:
                def watch() -> None:
                    while not done.wait(0.5):  # polling the queue's depth from outside
                        depths.append(pending_jobs(database))

                watcher = threading.Thread(target=watch, daemon=True)
                watcher.start()
                maker = webhook_maker(servers.url, "/caas/webhooks/ota-status", DEVELOPMENT_SECRET, OTA_STATUS)
                result = bench_client.run_blocking(servers.url, maker, duration=duration, connections=connections)
                until_processed(database)
                done.set()
                watcher.join()
                left = unprocessed_webhooks(database)
        finally:
            del os.environ["CAAS_WEBHOOK_BACKLOG"]
    figures = {"accepted": result.statuses.get(204, 0), "refused": result.statuses.get(503, 0),
               "other": result.errors({204, 503}), "deepest": max(depths, default=0), "unprocessed": left}
    print(f"overload: {duration:g} s, {connections} connections, bound {bound}: {figures}")
    return figures

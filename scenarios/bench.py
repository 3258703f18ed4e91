"""``caas-sim bench``: throughput of the simulators and the core against bare aiohttp.

Every figure is measured in the same run, on the same machine, against a bare
baseline, in alternating rounds, and printed with its ratio and target:

- ``sim``: every simulator's main operations (IoT activate and status, payments
  initiate, factory order, VSS maintenance status, each registry's submission) with the
  kit on (contract validation in and out, fault matching with no rule, idempotency,
  journal, metrics, busy accounting) against a bare aiohttp ``echo`` handler (target
  0.7), the IoT model without the kit as a second line, then each at a fixed rate of
  half its capacity for its p50/p99 (target p99 <= 10 ms) once it has answered ``--held``
  requests of it (``bench_sim``, ``bench_paced``);
  ``--memory``: the IoT simulator's bytes per touched vehicle (``bench_memory``);
  ``--wiremock JAR``: each operation also answered by WireMock from the same contract,
  reported (``bench_wiremock``);
- ``webhooks``: webhook ingestion on one core process (Standard Webhooks signature
  check, durable dedupe, inbox row and processing job committed, 204) against a bare
  aiohttp JSON POST handler (target 0.5); the same process also processing every job,
  timed until drained (target 0.25), and that processing against ingestion alone
  (target 0.5) (``bench_webhooks``);
- ``ota``: end-to-end OTA activations per second (purchase accepted, payment, OTA
  attempt, the simulator's signed ACTIVATED callback ingested and processed) against
  bare POST requests per second (reported), and against the ceiling HTTP alone sets
  (capacity, target 0.5) (``bench_ota``);
- ``scaleout``: webhooks ingested and processed by two core processes on one PostgreSQL
  against one (target 1.3) (``bench_webhooks``).

Each server runs alone in a process. Two figures per variant: requests/s under load,
and server CPU per request (read from /proc). The CPU figure is the robust one: it does
not depend on whether the load generator or the server saturates first on a shared
machine. The load comes from ``bench_client`` (pre-built requests on keep-alive
connections). The parts: servers, rounds and the summary in ``bench_measure``, the
databases in ``bench_db``.
"""

from __future__ import annotations

import statistics
import sys

from .bench_db import DEFAULT_POSTGRES, PostgresDatabase
from .bench_measure import TARGETS, Comparison, print_summary
from .bench_memory import bench_memory
from .bench_ota import OTA_EXCHANGES, bench_ota, exchange_cpu
from .bench_sim import HELD, bench_sim
from .bench_webhooks import OTA_STATUS, bench_scaleout, bench_webhooks, webhook_round

__all__ = ["DEFAULT_POSTGRES", "OTA_EXCHANGES", "OTA_STATUS", "TARGETS", "Comparison", "PostgresDatabase",
           "bench_ota", "bench_scaleout", "bench_sim", "bench_webhooks", "exchange_cpu", "main", "print_summary"]


def main(which: str = "all", duration: float = 5.0, connections: int = 32, rounds: int = 3,
         postgres: str = DEFAULT_POSTGRES, purchases: int = 1000, only: str | None = None,
         memory: bool = False, wiremock: str | None = None, held: int = HELD, instructions: bool = False) -> int:
    comparisons: list[Comparison] = []
    memory_met = bench_memory() if memory else True
    if which in ("all", "webhooks"):
        comparisons.extend(bench_webhooks(duration, connections, rounds))
    if which in ("all", "sim"):
        comparisons.extend(bench_sim(duration, connections, rounds, only, wiremock, held, instructions))
    if which in ("all", "ota"):
        baseline = next(((c.baseline_rps, c.baseline_cpu) for c in comparisons if c.baseline == "post"), None)
        if baseline is None:
            print("ota: measuring the bare POST baseline first")
            posts = [webhook_round("post", None, duration, connections) for _ in range(rounds)]
            baseline = (statistics.median(r.rps for r in posts), statistics.median(r.cpu_us_per_request for r in posts))
        comparisons.extend(bench_ota(purchases, connections, postgres, *baseline))
    if which in ("all", "scaleout"):
        comparisons.append(bench_scaleout(duration, connections, rounds, postgres))
    print_summary(comparisons)
    return 0 if memory_met and all(c.met for c in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())

"""``caas-sim bench``: throughput of the simulators and the core against bare aiohttp.

Every figure is measured in the same run, on the same machine, against a bare
baseline, in alternating rounds, and printed with its ratio and target:

- ``sim``: ``POST /ota/activate`` on the IoT simulator with the kit on (contract
  validation in and out, fault matching with no rule, idempotency, journal, busy
  accounting) against a bare aiohttp handler calling the same model (target 0.7); an
  ``echo`` handler (no model) is the floor (``bench_sim``);
- ``webhooks``: webhook ingestion on one core process (Standard Webhooks signature
  check, durable dedupe, inbox row and processing job committed, 204) against a bare
  aiohttp JSON POST handler (target 0.5) (``bench_webhooks``);
- ``ota``: end-to-end OTA activations per second (purchase accepted, payment, OTA
  attempt, the simulator's signed ACTIVATED callback ingested and processed) against
  bare POST requests per second (target 0.1) (``bench_ota``);
- ``scaleout``: webhook ingestion of two core processes on one PostgreSQL against one
  (``bench_webhooks``).

Each server runs alone in a process. Two figures per variant: requests/s under load,
and server CPU per request (read from /proc). The CPU figure is the robust one: it does
not depend on whether the load generator or the server saturates first on a shared
machine. The load comes from wrk for ``sim`` when it is installed, otherwise (and for
signed webhooks, which wrk cannot sign) from ``bench_client``. The parts: servers,
rounds and the summary in ``bench_measure``, the databases in ``bench_db``.
"""

from __future__ import annotations

import statistics
import sys

from .bench_db import DEFAULT_POSTGRES, PostgresDatabase
from .bench_measure import TARGETS, Comparison, print_summary
from .bench_ota import OTA_EXCHANGES, bench_ota, exchange_cpu
from .bench_sim import bench_sim
from .bench_webhooks import OTA_STATUS, bench_scaleout, bench_webhooks, webhook_round

__all__ = ["DEFAULT_POSTGRES", "OTA_EXCHANGES", "OTA_STATUS", "TARGETS", "Comparison", "PostgresDatabase",
           "bench_ota", "bench_scaleout", "bench_sim", "bench_webhooks", "exchange_cpu", "main", "print_summary"]


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
            posts = [webhook_round("post", None, duration, connections) for _ in range(rounds)]
            baseline = (statistics.median(r.rps for r in posts), statistics.median(r.cpu_us_per_request for r in posts))
        comparisons.append(bench_ota(purchases, connections, postgres, *baseline))
    if which in ("all", "scaleout"):
        comparisons.append(bench_scaleout(duration, connections, rounds, postgres))
    print_summary(comparisons)
    return 0 if all(c.met for c in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The run's figures, HTTP requests apart from business metrics, and stopping a run that fails.

Business metrics (a purchase's time to ACTIVE on the core's clock...) go through locust's
request event, so its web UI and HTML report show them, under the request type ``metric``.
Locust's own "Aggregated" row then mixes them with HTTP latencies; the summary written here
(``--caas-summary FILE``, at the end, by the master or the only process) keeps them apart:
every HTTP request, their exact total (locust's entries merged), and each metric with the
clock it is measured on. ``caas-sim load`` reads it for its tables, SLOs and reports.

Fail fast: when every HTTP request of the first ``--caas-fail-fast`` seconds failed (the
target unreachable, or answering only errors), the run stops with one line saying so and
exit code 1, instead of measuring errors for its whole duration.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import gevent
import locust  # noqa: F401  first: gevent must patch ssl before anything imports it
import orjson
from locust import events
from locust.runners import WorkerRunner
from locust.stats import StatsEntry

from caas_sim.loadtests.common import options

METRIC_TYPE = "metric"
#: A business metric's measurement cut short by the end of the run (a purchase still awaited):
#: counted apart, neither a success nor a failure, so that a run that measured nothing says so.
UNFINISHED_TYPE = "unfinished"
#: Each business metric's clock, declared by the locustfile that fires it (at import, so a
#: master that runs no user knows them too).
CLOCKS: dict[str, str] = {}
_aborted: list[str] = []
_started: list[float] = []


def metric(name: str, clock: str) -> str:
    CLOCKS[name] = clock
    return name


def record(name: str, milliseconds: float, error: Exception | None = None) -> None:
    events.request.fire(request_type=METRIC_TYPE, name=name, response_time=milliseconds, response_length=0,
                        exception=error, context={})


def unfinished(name: str) -> None:
    """One measurement of the metric ``name`` the run's end cut short."""
    events.request.fire(request_type=UNFINISHED_TYPE, name=name, response_time=0, response_length=0,
                        exception=None, context={})


def _http(environment) -> list[StatsEntry]:
    return [e for e in environment.stats.entries.values() if e.method not in (METRIC_TYPE, UNFINISHED_TYPE)]


def _row(entry: StatsEntry) -> dict:
    percentile = entry.get_response_time_percentile
    return {"name": entry.name, "method": entry.method, "requests": entry.num_requests,
            "failures": entry.num_failures, "rps": round(entry.total_rps, 3),
            "p50_ms": entry.median_response_time, "p95_ms": percentile(0.95), "p99_ms": percentile(0.99),
            "max_ms": round(entry.max_response_time or 0, 3), "avg_ms": round(entry.avg_response_time, 3)}


def summary(environment) -> dict:
    stats = environment.stats
    http = sorted(_http(environment), key=lambda e: (e.name, e.method))
    total = StatsEntry(stats, "all HTTP requests", "", use_response_times_cache=False)
    for entry in http:
        total.extend(entry)
    metrics = [{**_row(e), "clock": CLOCKS.get(e.name, "wall")} for e in stats.entries.values()
               if e.method == METRIC_TYPE]
    errors = Counter({f"{e.method} {e.name}: {e.error}": e.occurrences for e in stats.errors.values()})
    return {"host": environment.host, "seconds": round(time.time() - _started[0], 3) if _started else None,
            "http": [_row(e) for e in http], "httpTotal": _row(total), "metrics": metrics,
            "unfinished": {e.name: e.num_requests for e in stats.entries.values() if e.method == UNFINISHED_TYPE},
            "errors": [{"error": text, "count": n} for text, n in errors.most_common(5)],
            "aborted": _aborted[0] if _aborted else None}


@events.test_start.add_listener
def _arm(environment, **_) -> None:
    _started[:] = [time.time()]
    seconds = options(environment).caas_fail_fast
    if seconds > 0 and not isinstance(environment.runner, WorkerRunner):
        gevent.spawn_later(seconds, _judge, environment, seconds)


def _judge(environment, seconds: float) -> None:
    http = _http(environment)
    requests, failures = sum(e.num_requests for e in http), sum(e.num_failures for e in http)
    if requests == 0 or failures < requests:
        return
    example = max(environment.stats.errors.values(), key=lambda e: e.occurrences, default=None)
    said = f"; e.g. {example.error}" if example else ""
    _aborted[:] = [(f"all {requests} requests to {environment.host} failed in the first {seconds:g} s{said}: "
                   "the run was stopped")]
    print(f"caas-sim: {_aborted[0]}", file=sys.stderr, flush=True)
    environment.process_exit_code = 1
    environment.runner.quit()


@events.quitting.add_listener
def _write(environment, **_) -> None:
    path = options(environment).caas_summary
    if path and not isinstance(environment.runner, WorkerRunner):
        with open(path, "wb") as f:
            f.write(orjson.dumps(summary(environment), option=orjson.OPT_INDENT_2))

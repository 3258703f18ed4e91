"""The core's Prometheus metrics (``GET /metrics``): requests by route and status, upstream
calls by peer and outcome, and, read when scraped, the job queue, the inbox backlog and
the clock. One registry per core app (tests run several in one process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from caas_sim.request_counts import RequestCounts

disable_created_metrics()  # the *_created series: noise for counters that live as long as the process

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Seconds: the core answers in milliseconds; a purchase waits on the gateway and VSS.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class CoreMetrics:
    def __init__(self, now: Callable[[], float]):
        self.registry = r = CollectorRegistry(auto_describe=True)
        # Requests, counted on every one, as plain numbers exposed when scraped.
        self.requests = RequestCounts(
            ("caas_core_requests", "Requests answered, by route and status"),
            ("caas_core_request_duration_seconds", "Time to answer a request, by route"),
            ["method", "route"], LATENCY_BUCKETS)
        r.register(self.requests)
        self.upstream = Counter("caas_core_upstream_calls", "Calls to the external systems, by peer and outcome "
                                "(answered, rejected, unavailable, malformed)", ["peer", "outcome"], registry=r)
        self.upstream_latency = Histogram("caas_core_upstream_call_duration_seconds", "Time a peer took to "
                                          "answer", ["peer"], buckets=LATENCY_BUCKETS, registry=r)
        self.jobs_pending = Gauge("caas_core_jobs_pending", "Jobs waiting in the queue, by kind", ["kind"], registry=r)
        self.jobs_lag = Gauge("caas_core_jobs_oldest_due_lag_seconds", "How long the oldest due job has waited "
                              "past its time (0: none overdue)", registry=r)
        self.inbox_backlog = Gauge("caas_core_inbox_unprocessed", "Webhooks accepted and not yet processed",
                                   registry=r)
        Gauge("caas_core_clock_seconds", "The core's clock (Unix seconds)", registry=r).set_function(now)
        self.request = self.requests.count  # (method, route), status, seconds: on every request

    def upstream_call(self, peer: str, outcome: str, seconds: float | None) -> None:
        self.upstream.labels(peer, outcome).inc()
        if seconds is not None:
            self.upstream_latency.labels(peer).observe(seconds)

    def queue(self, pending: dict[str, int], oldest_due: float | None, unprocessed: int, now: float) -> None:
        """What the store says now (read just before a scrape)."""
        self.jobs_pending.clear()
        for kind, count in pending.items():
            self.jobs_pending.labels(kind).set(count)
        self.jobs_lag.set(max(0.0, now - oldest_due) if oldest_due is not None else 0.0)
        self.inbox_backlog.set(unprocessed)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

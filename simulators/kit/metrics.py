"""Prometheus metrics of a simulator (``GET /metrics``), read off its journal.

Every exchange a service has is already one journal entry (requests in, webhooks out,
faults fired, contract violations); counting them as they are appended keeps the request
path as it was, and the figures can never disagree with the journal. One registry per
service: several run in one process (``caas-sim up``), each answering for itself.

Requests, the one series counted on every request, are plain integers exposed by a
collector when scraped: prometheus-client's counters and histograms take a lock and
search the buckets in Python on every observation.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

disable_created_metrics()  # the *_created series: noise for counters that live as long as the process

#: Seconds: a simulator answers in microseconds unless a fault holds it (latency, timeout).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    def __init__(self, service: str, now: Callable[[], float]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = _RequestCounts(service)
        r.register(self._requests)
        self._faults = Counter("caas_sim_faults_fired", "Fault rules fired, by rule id and action",
                               ["service", "rule_id", "action"], registry=r)
        self._violations = Counter("caas_sim_contract_violations", "Contract violations (in: requests; out: "
                                   "answers and webhooks)", ["service", "direction"], registry=r)
        self._webhooks = Counter("caas_sim_webhook_deliveries", "Webhook delivery attempts and their outcome "
                                 "(delivered, failed, lost, exhausted)", ["service", "outcome"], registry=r)
        self._retries = Counter("caas_sim_webhook_retries", "Webhook attempts after the first",
                                ["service"], registry=r)
        self._delivery = Histogram("caas_sim_webhook_delivery_seconds", "Time a receiver took to answer a "
                                   "webhook", ["service"], buckets=LATENCY_BUCKETS, registry=r)
        Gauge("caas_sim_clock_seconds", "The service's clock (Unix seconds; virtual time moves only when told)",
              ["service"], registry=r).labels(service).set_function(now)
        self._service = service

    def observe(self, kind: str, direction: str, entry: dict) -> None:
        """A journal entry was appended (``Journal(observer=...)``): its kind, direction and fields."""
        if kind == "request":
            # a simulator's own routes (VSS's read-only guard) journal no operation or latency;
            # a request without status had its connection dropped on purpose
            self._requests.count(entry.get("operation", ""), entry.get("status", "dropped"), entry.get("latencyMs"))
        elif kind == "webhook":
            self._webhook(entry.get("detail") or {}, entry.get("latencyMs"))
        elif kind == "fault":
            action = (entry.get("detail") or {}).get("action", "")
            self._faults.labels(self._service, entry.get("ruleId", ""), action).inc()
        elif kind == "violation":
            self._violations.labels(self._service, direction).inc()

    def _webhook(self, detail: dict, latency_ms: float | None) -> None:
        outcome = detail.get("outcome")
        if outcome is None:
            return
        self._webhooks.labels(self._service, outcome).inc()
        if detail.get("attempt", 1) > 1:
            self._retries.labels(self._service).inc()
        if latency_ms is not None:
            self._delivery.labels(self._service).observe(latency_ms / 1000)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _RequestCounts(Collector):
    """``caas_sim_requests_total`` and ``caas_sim_request_duration_seconds`` as plain numbers."""

    def __init__(self, service: str):
        self._service = service
        self._counts: dict[tuple[str, int | str], int] = {}
        self._latency: dict[str, list] = {}  # operation -> [count per bucket (+Inf last), sum]

    def count(self, operation: str, status: int | str, latency_ms: float | None) -> None:
        key = (operation, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        if latency_ms is None:
            return
        seconds = latency_ms / 1000
        latency = self._latency.get(operation)
        if latency is None:
            latency = self._latency[operation] = [[0] * (len(LATENCY_BUCKETS) + 1), 0.0]
        latency[0][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        latency[1] += seconds

    def collect(self) -> Iterator:
        requests = CounterMetricFamily("caas_sim_requests", "Requests answered, by operation and status",
                                       labels=["service", "operation", "status"])
        for (operation, status), n in self._counts.items():
            requests.add_metric([self._service, operation, str(status)], n)
        yield requests
        latency = HistogramMetricFamily("caas_sim_request_duration_seconds", "Time to answer a request, by operation",
                                        labels=["service", "operation"])
        for operation, (counts, total) in self._latency.items():
            cumulative, buckets = 0, []
            for bound, n in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else str(float(bound)), cumulative))
            latency.add_metric([self._service, operation], buckets, total)
        yield latency

    def describe(self) -> Iterator:
        return iter(())  # collected on demand, never checked for clashes at registration

"""Prometheus metrics of a simulator (``GET /metrics``), read off its journal.

Every exchange a service has is already one journal entry (requests in, webhooks out,
faults fired, contract violations); counting them as they are appended keeps the request
path as it was, and the figures can never disagree with the journal. One registry per
service: several run in one process (``caas-sim up``), each answering for itself.

Requests, the one series counted on every request, are plain integers exposed by a
collector when scraped (``caas_sim/request_counts.py``).
"""

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

#: Seconds: a simulator answers in microseconds unless a fault holds it (latency, timeout).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    def __init__(self, service: str, now: Callable[[], float]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = RequestCounts(
            ("caas_sim_requests", "Requests answered, by operation and status"),
            ("caas_sim_request_duration_seconds", "Time to answer a request, by operation"),
            ["operation"], LATENCY_BUCKETS, fixed={"service": service})
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
            latency_ms = entry.get("latencyMs")
            self._requests.count((entry.get("operation", ""),), entry.get("status", "dropped"),
                                 None if latency_ms is None else latency_ms / 1000)
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

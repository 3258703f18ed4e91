"""Requests counted and timed as plain numbers, exposed as a Prometheus counter and
histogram when scraped: what the simulators' and the core's ``/metrics`` count on every
request.

prometheus-client's counters and histograms take a lock and search their buckets in Python
on every observation (about a twentieth of what the core's webhook ingestion executed per
request). Here a request costs two dict updates and a bisect; the series are built only
when scraped. A leaf module: the simulators and the core both use it, and know nothing of
each other.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector


class RequestCounts(Collector):
    """``{counter}_total`` by ``labels`` and status, ``{histogram}`` by ``labels``; ``fixed``:
    leading label values the same for every series (a simulator's service name)."""

    def __init__(self, counter: tuple[str, str], histogram: tuple[str, str], labels: Sequence[str],
                 buckets: Sequence[float], *, fixed: dict[str, str] | None = None):
        self._counter, self._histogram = counter, histogram
        self._fixed_names, self._fixed = list((fixed or {}).keys()), list((fixed or {}).values())
        self._labels, self._buckets = list(labels), tuple(buckets)
        self._counts: dict[tuple, int] = {}
        self._latency: dict[tuple, list] = {}  # labels -> [count per bucket (+Inf last), sum]

    def count(self, labels: tuple, status: int | str, seconds: float | None) -> None:
        """One request answered with ``status``; ``seconds``: how long it took (None: not timed)."""
        key = (*labels, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        if seconds is None:
            return
        latency = self._latency.get(labels)
        if latency is None:
            latency = self._latency[labels] = [[0] * (len(self._buckets) + 1), 0.0]
        latency[0][bisect.bisect_left(self._buckets, seconds)] += 1
        latency[1] += seconds

    def collect(self) -> Iterator:
        requests = CounterMetricFamily(*self._counter, labels=[*self._fixed_names, *self._labels, "status"])
        for key, n in self._counts.items():
            requests.add_metric([*self._fixed, *key[:-1], str(key[-1])], n)
        yield requests
        latency = HistogramMetricFamily(*self._histogram, labels=[*self._fixed_names, *self._labels])
        bounds = (*self._buckets, float("inf"))
        for labels, (counts, total) in self._latency.items():
            cumulative, buckets = 0, []
            for bound, n in zip(bounds, counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else str(float(bound)), cumulative))
            latency.add_metric([*self._fixed, *labels], buckets, total)
        yield latency

    def describe(self) -> Iterator:
        return iter(())  # collected on demand, never checked for clashes at registration

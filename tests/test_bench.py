"""`caas-sim bench` cannot rot: its webhook measure and the OTA ceiling's unit run briefly.

Figures are not asserted (the machine is shared and noisy): only that every line of the
summary is measured and printed, with its ratios."""

import pytest

from scenarios import bench

pytestmark = pytest.mark.timeout(120)


def test_the_webhook_measure_prints_both_ratios_of_each_line(capsys):
    bench.main("webhooks", duration=0.5, connections=4, rounds=1)
    out = capsys.readouterr().out
    ingestion = next(line for line in out.splitlines() if line.startswith("webhook ingestion"))
    throughput, capacity, target = ingestion.split()[-4:-1]
    assert float(throughput) > 0 and float(capacity) > 0 and target == ">=0.5"
    assert any(line.startswith("ingest + process") for line in out.splitlines())


def test_an_http_exchange_costs_some_cpu():
    assert 10 < bench.exchange_cpu(connections=4, requests=400) < 100_000  # µs, client and server together

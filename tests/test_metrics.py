"""GET /metrics on every service of a world: Prometheus text (parsed with prometheus-client's
own parser), and the counters move when an activation happens."""

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from caas_sim import catalogue
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.iot.api import MODEL_KEY

KEYS = {"k-c1": {"role": "customer", "subject": "c-1"}}
CARD = {"type": "CARD", "token": "pm_card_visa"}


@pytest.fixture
async def world(tmp_path):
    stack = Stack(services=list(catalogue.NAMES), seed=0,
                  core={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", "api_keys": KEYS})
    async with stack, aiohttp.ClientSession() as http:
        yield stack, http


async def scrape(http, url: str) -> dict[tuple[str, tuple], float]:
    async with http.get(url + "/metrics") as r:
        assert r.status == 200
        assert r.content_type == "text/plain"
        text = await r.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


async def test_every_service_serves_its_metrics_and_an_activation_moves_them(world):
    stack, http = world
    before = {name: await scrape(http, stack.url(name)) for name in ["core", *catalogue.NAMES]}
    for name in catalogue.NAMES:
        assert total(before[name], "caas_sim_clock_seconds", service=name) == stack.clock.now()
    vin = stack.running["iot"].app[MODEL_KEY].fleet.magic_vins()["healthy"]
    async with http.post(stack.url("core") + f"/customers/c-1/vehicles/{vin}/purchases",
                         headers={"Authorization": "Bearer k-c1"},
                         json={"serviceId": "heated-seats", "durationType": "PERMANENT", "paymentMethod": CARD}) as r:
        assert r.status == 201
    await stack.advance("1m")

    iot = await scrape(http, stack.url("iot"))
    assert total(iot, "caas_sim_requests_total", operation="activateService", status="202") == 1
    assert total(iot, "caas_sim_request_duration_seconds_count", operation="activateService") == 1
    assert total(iot, "caas_sim_webhook_deliveries_total", outcome="delivered") >= 1
    assert total(before["iot"], "caas_sim_webhook_deliveries_total") == 0
    core = await scrape(http, stack.url("core"))
    assert total(core, "caas_core_upstream_calls_total", peer="iot", outcome="answered") >= 1
    assert total(core, "caas_core_upstream_calls_total", peer="payments", outcome="answered") >= 1
    assert total(core, "caas_core_requests_total", route="/caas/webhooks/{source}", status="204") >= 1
    assert total(core, "caas_core_requests_total", route="/customers/{customerId}/vehicles/{vin}/purchases",
                  status="201") == 1
    assert total(core, "caas_core_clock_seconds") == stack.clock.now()
    assert ("caas_core_inbox_unprocessed", ()) in core and ("caas_core_jobs_oldest_due_lag_seconds", ()) in core


async def test_a_fired_fault_rule_is_counted_by_its_id(world):
    stack, http = world
    stack.service("iot").faults.add({"id": "down", "match": {"operation": "getVehicleStatus"},
                                     "action": {"type": "http_error", "params": {"status": 503}}})
    vin = stack.running["iot"].app[MODEL_KEY].fleet.magic_vins()["healthy"]
    async with http.get(stack.url("iot") + f"/vehicles/{vin}/status") as r:
        assert r.status == 503
    iot = await scrape(http, stack.url("iot"))
    assert total(iot, "caas_sim_faults_fired_total", rule_id="down", action="http_error") == 1
    assert total(iot, "caas_sim_requests_total", operation="getVehicleStatus", status="503") == 1


def test_request_counts_expose_a_counter_and_a_cumulative_histogram():
    from prometheus_client import CollectorRegistry, generate_latest

    from caas_sim.request_counts import RequestCounts

    counts = RequestCounts(("x_requests", "requests"), ("x_seconds", "time"), ["route"], (0.01, 0.1),
                           fixed={"service": "s"})
    registry = CollectorRegistry()
    registry.register(counts)
    for seconds in (0.005, 0.01, 0.05, 3.0):  # a bound counts in its own bucket: le means <=
        counts.count(("/a",), 200, seconds)
    counts.count(("/a",), "dropped", None)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(generate_latest(registry).decode())
               for s in family.samples}
    a = (("route", "/a"), ("service", "s"))
    assert samples[("x_requests_total", (*a, ("status", "200")))] == 4
    assert samples[("x_requests_total", (*a, ("status", "dropped")))] == 1
    assert [samples[("x_seconds_bucket", (("le", le), *a))] for le in ("0.01", "0.1", "+Inf")] == [2, 3, 4]
    assert (samples[("x_seconds_count", a)], samples[("x_seconds_sum", a)]) == (4, pytest.approx(3.065))

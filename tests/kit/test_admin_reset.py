"""Reset means reset: a service is back to how it started, its webhook subscriptions included,
unless the caller asks to keep them."""

import asyncio

import aiohttp
import pytest

from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.fleet import Fleet

EMPTY = {"subscriptions": []}


@pytest.fixture
async def iot():
    # the stack subscribes the simulator to its sink at start
    async with Stack(services=["iot"], seed=0) as stack, aiohttp.ClientSession(stack.url("iot")) as http:
        yield http


async def subscriptions(http) -> list[dict]:
    async with http.get("/__admin/webhooks") as r:
        return (await r.json())["subscriptions"]


async def test_reset_undoes_the_subscriptions_the_admin_protocol_changed(iot):
    started = await subscriptions(iot)
    assert started, "the stack subscribes its sink"
    async with iot.put("/__admin/webhooks", json=EMPTY) as r:  # what fuzzing admin.yaml may leave
        assert r.status == 200
    assert await subscriptions(iot) == []
    async with iot.post("/__admin/reset") as r:
        assert r.status == 200
    assert await subscriptions(iot) == started
    # a second round behaves the same (the start is remembered, not the last reset's state)
    async with iot.put("/__admin/webhooks", json=EMPTY) as r:
        assert r.status == 200
    async with iot.post("/__admin/reset", json={}) as r:
        assert r.status == 200
    assert await subscriptions(iot) == started


async def test_reset_keeps_the_subscriptions_when_asked(iot):
    async with iot.put("/__admin/webhooks", json=EMPTY) as r:
        assert r.status == 200
    async with iot.post("/__admin/reset", json={"keepConfiguration": True}) as r:
        assert r.status == 200
    assert await subscriptions(iot) == []


async def test_reset_refuses_unknown_options(iot):
    async with iot.post("/__admin/reset", json={"keepConfig": True}) as r:
        assert r.status == 400
        assert r.content_type == "application/problem+json"


# A request held on the clock (an injected latency, a slow back end) is woken by a reset. Left
# to go on, it acted on the world after it: an order, an activation or a payment nobody asked
# for there, its webhooks sent to the next test's core. Its connection is dropped instead.
VIN = Fleet(0).vin_at(1000)
ORDER = {"reference": "held-1", "model": "ZEPHYR-EV", "options": ["PAINT-GLACIER-BLUE", "WHEELS-18", "HEAT-PUMP"],
         "customer": {"customerId": "cus-1", "firstName": "Lucía", "lastName": "García", "email": "l@example.com"},
         "dealership": {"id": "TEST-SLOW", "city": "Madrid", "country": "ES"}}  # 45 s to place
HELD = {
    # service: (the held request, how long it is held, what it would have made)
    "iot": (("/ota/activate", {"vin": VIN, "serviceId": "heated-seats", "duration": {"type": "PERMANENT"},
                               "configuration": {"featureFlags": ["heated_seats"], "parameters": {}}}),
            "20s", lambda body: [s["serviceId"] for s in body["activeServices"]], f"/vehicles/{VIN}/status"),
    "factory": (("/orders", ORDER), "45s", lambda body: [o["orderId"] for o in body["orders"]],
                "/orders?reference=held-1"),
    "payments": (("/payments/initiate", {"paymentType": "SERVICE", "amount": {"value": 4999, "currency": "EUR"},
                                         "paymentMethod": {"type": "CARD", "token": "pm_card_visa"},
                                         "metadata": {"customerId": "cust-1", "orderId": "ord-held"}}),
                 "30s", lambda body: [p["paymentId"] for p in body["payments"]], "/payments?orderId=ord-held"),
}


@pytest.mark.parametrize("reset", [True, False], ids=["reset-while-held", "not-reset"])
@pytest.mark.parametrize("name", list(HELD))
async def test_a_request_held_across_a_reset_is_dropped_and_leaves_nothing_in_the_world_after_it(name, reset):
    (path, body), held, made, read = HELD[name]
    async with Stack(services=[name], seed=0, options={"payments": {"authorization_latency": "30s"}}) as stack, \
            aiohttp.ClientSession(stack.url(name)) as http:
        if name == "iot":
            stack.service("iot").faults.add({"match": {"operation": "activateService"},
                                             "action": {"type": "latency", "params": {"ms": 20_000}}})
        pending = asyncio.ensure_future(http.post(path, json=body))
        await stack.advance("5s")
        assert not pending.done()
        if reset:
            async with http.post("/__admin/reset") as r:
                assert r.status == 200
            with pytest.raises((aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)):
                await pending
        else:
            await stack.advance(held)
            assert (await pending).status in (201, 202)
        await stack.advance("30d")
        async with http.get(read) as r:
            assert r.status == 200
            found = made(await r.json())
        assert bool(found) is not reset
        assert bool(stack.sink.received) is not reset  # the callback, the order's notices, the settlement
        if reset:  # not journaled: it was never part of this world
            assert [e for e in stack.journal() if e.get("method") == "POST"] == []

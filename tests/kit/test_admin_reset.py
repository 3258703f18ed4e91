"""Reset means reset: a service is back to how it started, its webhook subscriptions included,
unless the caller asks to keep them."""

import aiohttp
import pytest

from caas_sim.scenarios.stack import Stack

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

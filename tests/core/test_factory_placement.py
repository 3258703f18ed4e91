"""The factory order's placement timing (specification, Factory API, Outbound API: "Timeout
handling: 30-second timeout with exponential backoff retry"): the 30 s are the factory's to
confirm the order, and a queued order is tried again after doubling waits."""

from itertools import pairwise

import pytest

from caas_core.clock import parse_instant
from tests.core import test_sale_journey as journey
from tests.core.test_sale_journey import until

world = journey.world  # database_url: tests/core/conftest.py
ORDERS = {"method": "POST", "path": "/orders"}


def placements(stack, since):
    """When the core called ``POST /orders``, in seconds after ``since``, and the answers."""
    return [(round(parse_instant(e["vt"]) - since), e.get("status")) for e in stack.journal()
            if e.get("service") == "factory" and e.get("method") == "POST" and e.get("path") == "/orders"
            and e.get("status") is not None]


@pytest.mark.parametrize(("seconds", "status"), [(29, "ORDER_PLACED"), (31, "ORDER_QUEUED")])
async def test_the_factory_has_30_s_to_confirm_the_order(world, seconds, status):
    stack, api = world
    sale_id = await api.sell()
    stack.service("factory").faults.add({"id": "slow", "match": ORDERS, "times": 1,
                                         "action": {"type": "latency", "params": {"ms": seconds * 1000}}})
    t0 = stack.clock.now()
    code, sale = await stack.during(api.reserve(sale_id))
    assert code == 200 and sale["status"] == status, sale
    # the reservation's answer waited on the factory for its answer or our 30 s, not longer
    assert stack.clock.now() - t0 == pytest.approx(min(seconds, 30), abs=1)


async def test_a_queued_order_is_tried_again_after_doubling_waits(world):
    stack, api = world
    sale_id = await api.sell()
    stack.service("factory").faults.add({"id": "down", "match": ORDERS, "times": 5,
                                         "action": {"type": "http_error", "params": {"status": 503}}})
    t0 = stack.clock.now()
    code, sale = await api.reserve(sale_id)
    assert code == 200 and sale["status"] == "ORDER_QUEUED", sale
    sale = await until(stack, api, sale_id, "ORDER_PLACED", within="2h")
    assert sale["orderAttempts"] == 6
    times = [t for t, _ in placements(stack, t0)]
    gaps = [b - a for a, b in pairwise(times)]
    assert gaps == [60, 120, 240, 480, 960], placements(stack, t0)

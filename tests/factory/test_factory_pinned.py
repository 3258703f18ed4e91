"""What a placement answers, pinned: the cheap paths (day_of, the stage planner) must say
exactly what the datetime arithmetic and the original planner said."""

import gc
import random

import pytest

from caas_sim.simulators.factory.api import MODEL_KEY, create_app
from caas_sim.simulators.factory.order import day_of
from caas_sim.simulators.kit.clock import to_datetime
from caas_sim.simulators.kit.config import SimConfig

DAY = 86400.0


def body(reference, country="ES", dealership="ES-MAD-001", city="Madrid"):
    return {"reference": reference, "model": "ZEPHYR-EV", "options": ["PAINT-GLACIER-BLUE", "WHEELS-18"],
            "customer": {"customerId": "cus-1", "firstName": "Lucía", "lastName": "García",
                         "email": "l@example.com"},
            "dealership": {"id": dealership, "city": city, "country": country}}


async def test_placements_answer_the_pinned_ids_and_estimates():
    model = create_app(SimConfig(seed=42))[MODEL_KEY]
    home = await model.place(body("pin-1"), "cid-1")
    abroad = await model.place(body("pin-2", "FR", "FR-LYS-1", "Lyon"), "cid-2")
    assert home == {"orderId": "ord_8269744e04cb75f2c6b2", "reference": "pin-1", "status": "ORDER_PLACED",
                    "statusDescription": "Order confirmed: Zephyr EV for dealership ES-MAD-001",
                    "createdAt": "2026-01-05T08:00:00.000Z", "estimatedDate": "2026-02-02",
                    "estimatedCompletionDate": "2026-01-27"}
    assert (abroad["orderId"], abroad["estimatedDate"], abroad["estimatedCompletionDate"]) == (
        "ord_23bdad863cd9304815df", "2026-01-27", "2026-01-18")
    order = model.orders[home["orderId"]]
    assert order.history[-1]["estimatedDate"] == home["estimatedDate"]
    gc.collect()
    assert not gc.is_tracked(order.options)  # kept as a tuple of strings: nothing for the collector


@pytest.mark.parametrize("offset", [0.0, 1e-7, -1e-7, -4e-7, -5e-7, -6e-7, -1e-6, -0.0005, -0.001, 0.5, 43200.25])
def test_day_of_is_the_datetime_date_even_a_rounding_away_from_midnight(offset):
    rng = random.Random(offset)
    for _ in range(2000):
        ts = rng.randrange(1, 2_900_000) * DAY + offset
        assert day_of(ts) == to_datetime(ts).date().isoformat(), ts


def test_day_of_beyond_year_9999_fails_as_datetime_does():
    with pytest.raises(ValueError, match="out of range"):
        day_of(253402300800.0)


async def test_no_order_is_walked_by_the_garbage_collector_whatever_happened_to_it():
    """An order is kept as bytes (order.py): no collection walks any of them, in production,
    shipped with its tracking, or home-delivered, so the factory's tail does not grow with
    what it keeps."""
    from caas_sim.simulators.factory.api import TRANSPORT_KEY
    from caas_sim.simulators.factory.order import (
        REFERENCE,
        STEPS,
        Order,
        on_its_way,
        values_of,
    )
    from caas_sim.simulators.kit.clock import isoformat

    app = create_app(SimConfig(seed=42))
    model, transport = app[MODEL_KEY], app[TRANSPORT_KEY]
    delivered = await model.place(body("gc-1"), "cid-1")
    shipped = await model.place(body("gc-2", "FR", "FR-LYS-1", "Lyon"), "cid-2")
    await model.service.clock.advance(19 * DAY)
    in_transit = model.view(shipped["orderId"])
    assert in_transit["status"] == "IN_TRANSIT" and in_transit["tracking"]["checkpoints"]
    await model.service.clock.advance(30 * DAY)
    now = model.service.clock.now()
    transport.schedule(delivered["orderId"], {
        "address": {"line1": "Calle de Alcalá 123", "city": "Madrid", "postalCode": "28009", "country": "ES"},
        "requestedWindow": {"start": isoformat(now), "end": isoformat(now + 7 * DAY)},
        "finalPaymentReference": "pay_1"}, "cid-3")
    await model.service.clock.advance(8 * DAY)
    home, abroad = model.view(delivered["orderId"]), model.view(shipped["orderId"])
    assert (home["status"], home["vehicleLocation"]) == ("ARRIVED_AT_DEALERSHIP", "CUSTOMER")
    assert (abroad["status"], abroad["vehicleLocation"]) == ("ARRIVED_AT_DEALERSHIP", "DEALERSHIP")
    assert [c["code"] for c in abroad["tracking"]["checkpoints"]][-1] == "DELIVERED_TO_DEALERSHIP"
    assert [e["sequence"] for e in abroad["history"]] == list(range(1, len(abroad["history"]) + 1))
    # what forgetting reads without unpacking
    placed = await model.place(body("gc-3"), "cid-4")
    waiting, done = model.orders.raw(placed["orderId"]), model.orders.raw(shipped["orderId"])
    assert (values_of(waiting)[REFERENCE], values_of(done)[REFERENCE]) == ("gc-3", "gc-2")
    assert values_of(waiting)[STEPS] and not values_of(done)[STEPS]
    assert on_its_way(waiting) and not on_its_way(done)
    assert model.order(placed["orderId"]).steps[0].arg == "PRODUCTION_SCHEDULED"
    del home, abroad, in_transit, waiting, done
    gc.collect()
    assert len(model.orders) == 3
    assert all(type(packed) is bytes for packed in model.orders.raw_values())  # never tracked
    assert not any(isinstance(o, Order) for o in gc.get_objects())


async def test_a_reference_with_several_orders_finds_them_all_and_forgets_them_one_by_one():
    model = create_app(SimConfig(seed=42))[MODEL_KEY]
    same = [(await model.place(body("twice"), "cid"))["orderId"] for _ in range(3)]
    other = (await model.place(body("once"), "cid"))["orderId"]
    assert [o["orderId"] for o in model.find("twice")["orders"]] == same
    assert [o["orderId"] for o in model.find("once")["orders"]] == [other]
    # on their way: held, never queued to be forgotten (each placement past the bound
    # looked at queued orders it could not forget, ~20 µs more a placement; kit/retention.py)
    assert len(model.retention._queue) == 0
    await model.service.clock.advance(200 * DAY)  # all waiting at the dealership: nothing ahead
    assert len(model.retention._queue) == 4
    model.retention.keep = 2
    for _ in range(20):  # forgetting is lazy: a call looks at a few queued changes (kit/retention.py)
        model.prune()
    kept = [o["orderId"] for o in model.find("twice")["orders"]]  # the two last to arrive are kept
    assert len(model.orders) == 2 and kept == [i for i in same if i in kept]
    assert len(kept) + len(model.find("once")["orders"]) == 2
    model.retention.keep = 0
    for _ in range(20):
        model.prune()
    assert model.find("twice") == model.find("once") == {"orders": []}
    assert len(model.orders) == 0


@pytest.mark.parametrize("last_name", ["García", "Neverhome"])
async def test_an_order_on_a_home_delivery_is_held_until_the_vehicle_is_at_rest(last_name):
    """Past the bound, an order at the dealership may be forgotten, but not while a delivery
    booked for it is under way: its next move reads the order. Once the vehicle is at rest
    (delivered, or back at the dealership), the order goes with its deliveries."""
    from caas_sim.simulators.factory.api import TRANSPORT_KEY
    from caas_sim.simulators.kit.clock import isoformat

    app = create_app(SimConfig(seed=42))
    model, transport = app[MODEL_KEY], app[TRANSPORT_KEY]
    order = body("home")
    order["customer"]["lastName"] = last_name
    delivered = (await model.place(order, "cid-1"))["orderId"]
    waiting = (await model.place(body("stays"), "cid-2"))["orderId"]
    await model.service.clock.advance(40 * DAY)  # both at the dealership, nothing ahead
    now = model.service.clock.now()
    transport.schedule(delivered, {
        "address": {"line1": "Calle de Alcalá 123", "city": "Madrid", "postalCode": "28009", "country": "ES"},
        "requestedWindow": {"start": isoformat(now), "end": isoformat(now + 7 * DAY)},
        "finalPaymentReference": "pay_1"}, "cid-3")
    assert set(model.orders) == {delivered, waiting}
    model.retention.keep = 0
    for _ in range(20):
        model.prune()
    assert set(model.orders) == {delivered}  # the one waiting went; the one booked stays
    await model.service.clock.advance(8 * DAY)  # on the road, at the door, (back) at rest
    expected = ("CUSTOMER", "DELIVERED") if last_name == "García" else ("DEALERSHIP", "RETURNED_TO_DEALERSHIP")
    assert (model.view(delivered)["vehicleLocation"], transport.latest(delivered).status) == expected
    for _ in range(20):
        model.prune()
    assert len(model.orders) == 0
    assert (transport.deliveries, transport._by_order, transport._sequences) == ({}, {}, {})

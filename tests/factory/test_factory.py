"""The factory simulator end to end: real sockets, virtual time, signed notifications."""

import asyncio
import itertools
from datetime import UTC, datetime

import aiohttp
import pytest

from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.factory.api import MODEL_KEY as FACTORY
from caas_sim.simulators.factory.order import STATUSES
from caas_sim.simulators.factory.timeline import DEFAULT_STAGE_DAYS
from caas_sim.simulators.factory.transport import DeliveryRules
from caas_sim.simulators.fleet import Fleet
from caas_sim.simulators.kit.clock import isoformat, parse_datetime

SEED = 42
DAY = 86400.0
FLOW = list(STATUSES)
ASSEMBLY = ["BODY_IN_WHITE", "PAINT", "POWERTRAIN_MARRIAGE", "INTERIOR_TRIM"]
QC = ["STATIC_INSPECTION", "ELECTRICAL_CHECK", "DYNAMIC_TEST", "WATER_TEST"]


def order_body(reference="sale-1", dealership="ES-MAD-001", last_name="García", model="ZEPHYR-EV",
               options=("PAINT-GLACIER-BLUE", "WHEELS-18", "HEAT-PUMP"), country="ES", city="Madrid"):
    return {"reference": reference, "model": model, "options": list(options),
            "customer": {"customerId": "cus-1", "firstName": "Lucía", "lastName": last_name,
                         "email": "lucia@example.com"},
            "dealership": {"id": dealership, "city": city, "country": country}}


def delivery_body(stack, start_in=0.0, length=7 * DAY, country="ES", payment="pay_1"):
    start = stack.clock.now() + start_in
    return {"address": {"line1": "Calle de Alcalá 123", "city": "Madrid", "postalCode": "28009", "country": country},
            "requestedWindow": {"start": isoformat(start), "end": isoformat(start + length)},
            "finalPaymentReference": payment}


@pytest.fixture
async def factory():
    async with Stack(services=["factory"], seed=SEED) as stack:
        async with aiohttp.ClientSession(stack.url("factory")) as http:
            yield stack, http
        assert stack.violations() == []


async def place(http, body, key=None):
    headers = {"Idempotency-Key": key} if key else {}
    async with http.post("/orders", json=body, headers=headers) as r:
        return r.status, await r.json(), r.headers


async def get_order(http, order_id):
    async with http.get(f"/orders/{order_id}") as r:
        assert r.status == 200
        return await r.json()


def received(stack, order_id, event="ORDER_STATUS", unique=True):
    return [r for r in stack.sink.received
            if r.payload["orderId"] == order_id and r.payload["eventType"] == event and not (unique and r.duplicate)]


def notes(stack, order_id, event="ORDER_STATUS"):
    return [r.payload for r in received(stack, order_id, event)]


def changes(payloads):
    return [p for p in payloads if p["notification"] == "STATUS_CHANGED"]


async def arrived(stack, http, body):
    status, confirmed, _ = await place(http, body)
    assert status == 201, confirmed
    await stack.advance("60d")
    order = await get_order(http, confirmed["orderId"])
    assert order["status"] == "ARRIVED_AT_DEALERSHIP"
    return confirmed["orderId"]


async def test_happy_path_from_order_to_arrival_in_weeks_with_ordered_notifications(factory):
    stack, http = factory
    start = stack.clock.now()
    status, confirmed, headers = await place(http, order_body(), key="k-1")
    assert status == 201
    order_id = confirmed["orderId"]
    assert headers["Location"] == f"/orders/{order_id}" and confirmed["status"] == "ORDER_PLACED"
    await stack.advance(0)
    [first] = notes(stack, order_id)  # ORDER_PLACED leaves at once, the rest waits for the clock
    assert (first["sequence"], first["status"], first["previousStatus"]) == (1, "ORDER_PLACED", None)

    await stack.advance("60d")
    payloads = notes(stack, order_id)
    assert [p["sequence"] for p in payloads] == list(range(1, len(payloads) + 1))
    assert [p["status"] for p in changes(payloads)] == FLOW
    for before, after in itertools.pairwise(payloads):
        assert after["previousStatus"] == before["status"]
    milestones = [p["milestone"]["code"] for p in payloads if p["notification"] == "MILESTONE_REACHED"]
    assert milestones == ASSEMBLY + QC
    # Without faults the estimate given at placement is what happens, to the day.
    assert {p["estimatedDate"] for p in payloads} == {confirmed["estimatedDate"]}
    assert all(p["estimateRevision"] is None for p in payloads)
    at = {p["status"]: parse_datetime(p["timestamp"]) for p in changes(payloads)}
    assert isoformat(at["ARRIVED_AT_DEALERSHIP"])[:10] == confirmed["estimatedDate"]
    assert isoformat(at["READY_FOR_SHIPMENT"])[:10] == confirmed["estimatedCompletionDate"]
    # Realistic durations: every stage within its range, weeks in all.
    for status, stage in zip(FLOW, ["acceptance", "slot_wait", "assembly", "quality_control", "pickup", "transit"]):
        lo, hi = DEFAULT_STAGE_DAYS[stage]
        days = (at[FLOW[FLOW.index(status) + 1]] - at[status]) / DAY
        assert lo <= days <= hi + 1 / 1440, (status, days)
    assert 14 <= (at["ARRIVED_AT_DEALERSHIP"] - start) / DAY <= 50
    # Delivered when they happened, signed (the sink verifies), with the placement's correlation id.
    assert all(r.at == parse_datetime(r.payload["timestamp"]) for r in received(stack, order_id))
    # Tracking from IN_TRANSIT on: carrier, number, checkpoints, ETA.
    shipped = changes(payloads)[5]
    assert shipped["tracking"]["carrier"] == "Rutacar Logistics S.L."
    assert shipped["tracking"]["eta"] == isoformat(at["ARRIVED_AT_DEALERSHIP"])
    assert shipped["tracking"]["shippedAt"] == shipped["timestamp"]
    assert all(p["tracking"] is None for p in payloads[:-4])
    order = await get_order(http, order_id)
    assert [c["code"] for c in order["tracking"]["checkpoints"]] == [
        "LOADED", "HUB_ARRIVAL", "HUB_DEPARTURE", "DELIVERED_TO_DEALERSHIP"]
    assert order["tracking"]["currentLocation"] == "Dealership ES-MAD-001, Madrid"
    assert (order["status"], order["vehicleLocation"], order["delivery"]) == ("ARRIVED_AT_DEALERSHIP", "DEALERSHIP", None)
    assert order["history"] == [{k: p[k] for k in order["history"][0]} for p in payloads]
    assert order["qualityControl"] == {"rounds": 1, "failures": 0}
    # The VIN is a vehicle of the IoT fleet of the same seed, of the model ordered.
    assert Fleet(SEED).profile(order["vin"]).model == "Zephyr EV"
    assert all(p["vin"] == order["vin"] for p in payloads[2:]) and payloads[0]["vin"] is None


async def test_every_model_gets_a_distinct_vin_of_its_line_and_abroad_takes_longer(factory):
    stack, http = factory
    catalogue = await (await http.get("/catalogue")).json()
    available = [m for m in catalogue["models"] if m["status"] == "AVAILABLE"]
    assert {m["code"] for m in catalogue["models"]} - {m["code"] for m in available} == {"ORION"}
    ids = {}
    for n, m in enumerate(available):
        for country, city in (("ES", "Valencia"), ("GB", "Bristol")):
            status, confirmed, _ = await place(http, order_body(f"s-{n}-{country}", f"{country}-X-{n:03d}",
                                                                model=m["code"], options=(), country=country,
                                                                city=city))
            assert status == 201
            ids[(m["name"], country)] = confirmed["orderId"]
    await stack.advance("60d")
    orders = {key: await get_order(http, oid) for key, oid in ids.items()}
    fleet = Fleet(SEED)
    assert all(fleet.profile(o["vin"]).model == name for (name, _), o in orders.items())
    assert len({o["vin"] for o in orders.values()}) == len(orders)
    transit = lambda o: (parse_datetime(o["history"][-1]["timestamp"]) - parse_datetime(o["tracking"]["shippedAt"])) / DAY
    assert all(2 <= transit(o) <= 5 for (_, c), o in orders.items() if c == "ES")
    assert all(3 <= transit(o) <= 8 for (_, c), o in orders.items() if c == "GB")
    assert "Portbury" in orders[("Cirrus", "GB")]["tracking"]["checkpoints"][1]["location"]


async def test_qc_failure_loops_back_to_production_and_moves_the_estimate(factory):
    stack, http = factory
    _, magic, _ = await place(http, order_body("qc-magic", "TEST-QC-FAIL"))
    stack.service("factory").faults.add({"id": "qc2", "action": {"type": "qc_failed", "params": {"times": 2}},
                                         "match": {"selectors": {"reference": "qc-twice"}}})
    _, twice, _ = await place(http, order_body("qc-twice"))
    await stack.advance("80d")
    for confirmed, failures in ((magic, 1), (twice, 2)):
        payloads = notes(stack, confirmed["orderId"])
        flow = [p["status"] for p in changes(payloads)]
        rework = ["PRODUCTION_IN_PROGRESS", "QUALITY_CONTROL"] * failures
        assert flow == FLOW[:4] + rework + FLOW[4:]
        failed = [p for p in changes(payloads) if p["previousStatus"] == "QUALITY_CONTROL"
                  and p["status"] == "PRODUCTION_IN_PROGRESS"]
        assert len(failed) == failures
        for p in failed:
            assert p["milestone"]["result"] == "FAILED" and p["milestone"]["code"] in QC
            assert p["estimateRevision"]["reason"] == "QC_REWORK" and p["estimateRevision"]["delayDays"] > 0
        assert failed[0]["estimateRevision"]["previousEstimatedDate"] == confirmed["estimatedDate"]
        order = await get_order(http, confirmed["orderId"])
        assert order["qualityControl"] == {"rounds": failures + 1, "failures": failures}
        # The last revision is what happened.
        assert order["estimatedDate"] == failed[-1]["estimatedDate"] == payloads[-1]["timestamp"][:10]
        assert order["estimatedDate"] > confirmed["estimatedDate"]
    assert [e["ruleId"] for e in stack.service("factory").journal.entries() if e["kind"] == "fault"] == ["qc2"]


@pytest.mark.parametrize("body,reason", [
    (order_body("r-1", "TEST-REJECT"), "DEALERSHIP_NOT_AUTHORISED"),
    (order_body("r-2", model="ORION", options=()), "MODEL_DISCONTINUED"),
    (order_body("r-3", options=("SPARE-WHEEL",)), "INVALID_OPTIONS"),
    (order_body("r-5", options=("PAINT-POLAR-WHITE", "PAINT-VOLCANO-RED")), "INCOMPATIBLE_OPTIONS"),
    (order_body("r-6"), "EXPORT_RESTRICTED"),  # by fault rule, below
])
async def test_rejected_orders_are_422_with_a_reason_and_create_nothing(factory, body, reason):
    stack, http = factory
    stack.service("factory").faults.add({"action": {"type": "order_rejected", "params": {"reason": "EXPORT_RESTRICTED"}},
                                         "match": {"selectors": {"reference": "r-6"}}})
    status, problem, _ = await place(http, body)
    assert status == 422
    assert problem["reason"] == reason and problem["type"].endswith("/order-rejected") and problem["detail"]
    found = await (await http.get("/orders", params={"reference": body["reference"]})).json()
    assert found == {"orders": []}
    await stack.advance("30d")
    assert stack.sink.received == []


@pytest.mark.parametrize("body,pointer", [(order_body(model="MODEL-T"), "/model"),
                                          (order_body(options=("WARP-DRIVE",)), "/options/0")])
async def test_models_and_options_outside_the_catalogue_break_the_contract(factory, body, pointer):
    stack, http = factory
    status, problem, _ = await place(http, body)
    assert status == 400 and problem["violations"][0]["pointer"] == pointer
    stack.service("factory").journal.clear()  # the violation is expected here


async def test_factory_unavailable_answers_503_with_retry_after_and_a_retry_goes_through(factory):
    stack, http = factory
    stack.service("factory").faults.add({"action": {"type": "factory_unavailable", "params": {"retry_after": 300}},
                                         "times": 1})
    status, problem, headers = await place(http, order_body("u-1"), key="u-1")
    assert (status, headers["Retry-After"], problem["type"].split("/")[-1]) == (503, "300", "factory-unavailable")
    status, _, _ = await place(http, order_body("u-1"), key="u-1")  # a 5xx is not replayed: the retry runs
    assert status == 201
    outcomes = []
    for _ in range(3):
        status, _, headers = await place(http, order_body("u-2", "TEST-UNAVAILABLE"))
        outcomes.append((status, headers.get("Retry-After")))
    assert outcomes == [(503, "60"), (503, "60"), (201, None)]
    for reference in ("u-1", "u-2"):
        found = await (await http.get("/orders", params={"reference": reference})).json()
        assert len(found["orders"]) == 1


async def test_a_placement_refused_before_it_made_an_order_keeps_nothing_of_its_reference(factory):
    stack, http = factory
    stack.service("factory").faults.add({"action": {"type": "factory_unavailable", "params": {"retry_after": 300}},
                                         "match": {"selectors": {"reference": "down-*"}}})
    for n in range(20):  # as a load of refusals would send them, each reference once
        assert (await place(http, order_body(f"gone-{n}", model="ORION")))[0] == 422  # no longer built
        assert (await place(http, order_body(f"down-{n}")))[0] == 503
    model = stack.running["factory"].app[FACTORY]
    assert (model._attempts, model._by_reference) == ({}, {})


async def test_slow_placement_beyond_the_callers_timeout_still_creates_the_order(factory):
    stack, http = factory
    body = order_body("slow-1", "TEST-SLOW")
    started = stack.clock.now()
    first = asyncio.ensure_future(place(http, body, key="slow-key"))
    await stack.advance("30s")
    assert not first.done()  # the caller's 30 s timeout fires here
    status, _, _ = await place(http, body, key="slow-key")  # its retry meets the first attempt still running
    assert status == 409
    assert (await (await http.get("/orders", params={"reference": "slow-1"})).json()) == {"orders": []}
    first.cancel()  # the caller gives up and closes its connection; the factory carries on
    await asyncio.gather(first, return_exceptions=True)
    await stack.advance("15s")
    found = (await (await http.get("/orders", params={"reference": "slow-1"})).json())["orders"]
    assert len(found) == 1 and parse_datetime(found[0]["createdAt"]) == started + 45
    # The retry with the same key now gets the order the caller never saw.
    status, replayed, headers = await place(http, body, key="slow-key")
    assert (status, replayed["orderId"], headers["Idempotent-Replayed"]) == (201, found[0]["orderId"], "true")
    # Without a key, a retry after the timeout is a second order: the duplicate the key prevents.
    second = asyncio.ensure_future(place(http, body))
    await stack.advance("45s")
    assert (await second)[0] == 201
    found = (await (await http.get("/orders", params={"reference": "slow-1"})).json())["orders"]
    assert len(found) == 2


@pytest.mark.parametrize("how", ["magic", "fault"])
async def test_slow_placement_that_gives_up_creates_nothing(factory, how):
    stack, http = factory
    dealership = "TEST-SLOW-NO-ORDER" if how == "magic" else "ES-MAD-001"
    if how == "fault":
        stack.service("factory").faults.add({"action": {"type": "slow_placement",
                                                        "params": {"seconds": 45, "create": False}}})
    pending = asyncio.ensure_future(place(http, order_body("slow-2", dealership), key="k"))
    await stack.advance("44s")
    assert not pending.done()
    await stack.advance("1s")
    status, problem, _ = await pending
    assert status == 504 and problem["type"].endswith("/placement-timeout")
    assert (await (await http.get("/orders", params={"reference": "slow-2"})).json()) == {"orders": []}
    await stack.advance("10d")
    assert stack.sink.received == []


@pytest.mark.parametrize("how,days,reason", [("magic", 7, "SUPPLIER_SHORTAGE"),
                                             ("fault", 10, "PRODUCTION_LINE_STOPPAGE")])
async def test_production_delay_moves_the_estimated_date(factory, how, days, reason):
    stack, http = factory
    if how == "fault":
        stack.service("factory").faults.add({"action": {"type": "production_delay",
                                                        "params": {"days": days, "reason": reason}},
                                             "match": {"selectors": {"model": "BOREALIS"}}})
    body = order_body("d-1", "TEST-DELAY" if how == "magic" else "ES-MAD-001", model="BOREALIS", options=())
    _, confirmed, _ = await place(http, body)
    await stack.advance("70d")
    payloads = notes(stack, confirmed["orderId"])
    [update] = [p for p in payloads if p["notification"] == "ESTIMATE_UPDATED"]
    assert update["status"] == update["previousStatus"] == "PRODUCTION_IN_PROGRESS"
    revision = update["estimateRevision"]
    assert revision == {"previousEstimatedDate": confirmed["estimatedDate"],
                        "previousEstimatedCompletionDate": confirmed["estimatedCompletionDate"],
                        "reason": reason, "delayDays": days}
    assert [p["milestone"]["code"] for p in payloads if p["milestone"]][:3] == ASSEMBLY[:2] + [ASSEMBLY[2]]
    before = datetime.fromisoformat(confirmed["estimatedDate"])
    assert (datetime.fromisoformat(update["estimatedDate"]) - before).days == days
    assert payloads[-1]["status"] == "ARRIVED_AT_DEALERSHIP"
    assert payloads[-1]["timestamp"][:10] == update["estimatedDate"]
    assert {p["estimatedDate"] for p in payloads[payloads.index(update):]} == {update["estimatedDate"]}


async def test_duplicated_notifications_carry_the_same_webhook_id(factory):
    stack, http = factory
    stack.service("factory").faults.add({"action": {"type": "webhook_duplicated", "params": {"copies": 2}},
                                         "match": {"selectors": {"reference": "w-2", "status": "IN_TRANSIT",
                                                                 "notification": "STATUS_CHANGED"}}})
    _, magic, _ = await place(http, order_body("w-1", "TEST-WEBHOOK-DUP"))
    _, fault, _ = await place(http, order_body("w-2"))
    await stack.advance("60d")
    copies = received(stack, magic["orderId"], unique=False)
    assert len(copies) == 2 * len(notes(stack, magic["orderId"]))
    by_id = {}
    for r in copies:
        by_id.setdefault(r.webhook_id, []).append(r)
    assert all([c.duplicate for c in rs] == [False, True] and rs[0].payload == rs[1].payload for rs in by_id.values())
    extra = [r for r in received(stack, fault["orderId"], unique=False) if r.duplicate]
    assert [(r.payload["status"], r.payload["notification"]) for r in extra] == [("IN_TRANSIT", "STATUS_CHANGED")] * 2


async def test_reordered_notifications_can_be_put_back_in_order_by_sequence(factory):
    stack, http = factory
    stack.service("factory").faults.add({"action": {"type": "webhook_reordered"}, "times": 1,
                                         "match": {"selectors": {"reference": "o-2", "status": "READY_FOR_SHIPMENT"}}})
    _, magic, _ = await place(http, order_body("o-1", "TEST-WEBHOOK-REORDER"))
    _, fault, _ = await place(http, order_body("o-2"))
    await stack.advance("60d")
    arrival = [p["sequence"] for p in notes(stack, magic["orderId"])]
    n = len(arrival)
    expected = [1] + [s for k in range(2, n, 2) for s in (k + 1, k)] + ([n] if n % 2 == 0 else [])
    assert arrival == expected and sorted(arrival) == list(range(1, n + 1))
    # A held notification leaves right after the next one of its order.
    payloads = notes(stack, fault["orderId"])
    ready = next(i for i, p in enumerate(payloads) if p["status"] == "READY_FOR_SHIPMENT")
    assert payloads[ready - 1]["status"] == "IN_TRANSIT" and payloads[ready - 1]["sequence"] == payloads[ready]["sequence"] + 1
    late = received(stack, fault["orderId"])[ready]
    assert late.at == received(stack, fault["orderId"])[ready - 1].at + 1


async def test_delayed_notifications_arrive_late(factory):
    stack, http = factory
    stack.service("factory").faults.add({"action": {"type": "webhook_delayed", "params": {"seconds": 7200}},
                                         "match": {"selectors": {"reference": "l-2", "status": "ARRIVED_AT_DEALERSHIP"}}})
    _, magic, _ = await place(http, order_body("l-1", "TEST-WEBHOOK-DELAY"))
    _, fault, _ = await place(http, order_body("l-2"))
    await stack.advance("60d")
    assert {r.at - parse_datetime(r.payload["timestamp"]) for r in received(stack, magic["orderId"])} == {3600}
    lag = {r.payload["status"]: r.at - parse_datetime(r.payload["timestamp"]) for r in received(stack, fault["orderId"])
           if r.payload["notification"] == "STATUS_CHANGED"}
    assert lag.pop("ARRIVED_AT_DEALERSHIP") == 7200 and set(lag.values()) == {0}


async def test_lost_notifications_are_redelivered_with_the_same_webhook_id(factory):
    stack, http = factory
    stack.service("factory").faults.add({"id": "lose", "action": {"type": "webhook_lost", "params": {"redeliver_after": 1800}},
                                         "match": {"selectors": {"reference": "x-2", "notification": "TRACKING_UPDATED"}},
                                         "times": 1})
    _, magic, _ = await place(http, order_body("x-1", "TEST-WEBHOOK-LOST"))
    _, fault, _ = await place(http, order_body("x-2"))
    await stack.advance("60d")
    first = received(stack, magic["orderId"])
    assert [r.payload["sequence"] for r in first[:2]] == [2, 1]  # ORDER_PLACED came after PRODUCTION_SCHEDULED
    assert first[1].at - parse_datetime(first[1].payload["timestamp"]) == 72 * 3600
    lost = [e for e in stack.service("factory").journal.entries()
            if e["kind"] == "webhook" and e["detail"]["outcome"] == "lost"]
    assert len(lost) == 2 and lost[0]["detail"]["webhookId"] == first[1].webhook_id
    assert (lost[0].get("ruleId"), lost[1]["ruleId"]) == (None, "lose")
    redelivered = next(r for r in received(stack, fault["orderId"]) if r.webhook_id == lost[1]["detail"]["webhookId"])
    assert redelivered.payload["notification"] == "TRACKING_UPDATED"
    assert redelivered.at - parse_datetime(redelivered.payload["timestamp"]) == 1800
    assert sorted(p["sequence"] for p in notes(stack, fault["orderId"])) == list(range(1, 18))


async def test_home_delivery_is_scheduled_in_a_slot_and_delivered(factory):
    stack, http = factory
    order_id = await arrived(stack, http, order_body("h-1"))
    requested = stack.clock.now()
    async with http.post(f"/orders/{order_id}/delivery", json=delivery_body(stack)) as r:
        assert r.status == 201 and r.headers["Location"] == f"/orders/{order_id}/delivery"
        delivery = await r.json()
    rules = DeliveryRules()
    start, end = (parse_datetime(delivery["slot"][k]) for k in ("start", "end"))
    begins = datetime.fromtimestamp(start, UTC)
    assert start >= requested + rules.lead_hours * 3600 and end - start == rules.slot_hours * 3600
    assert begins.weekday() in rules.working_days and rules.open_hour <= begins.hour < rules.close_hour
    assert (delivery["status"], delivery["attempt"]) == ("SCHEDULED", 1)
    assert (await get_order(http, order_id))["delivery"] == delivery
    await stack.advance("7d")
    events = received(stack, order_id, "DELIVERY_STATUS")
    assert [(r.payload["sequence"], r.payload["status"], r.payload["vehicleLocation"]) for r in events] == [
        (1, "OUT_FOR_DELIVERY", "OUT_FOR_DELIVERY"), (2, "DELIVERED", "CUSTOMER")]
    assert events[0].at == start - 3600 and start <= events[1].at <= end
    assert events[1].payload["previousStatus"] == "OUT_FOR_DELIVERY"
    assert (await get_order(http, order_id))["vehicleLocation"] == "CUSTOMER"
    assert (await (await http.get(f"/orders/{order_id}/delivery")).json())["status"] == "DELIVERED"
    async with http.post(f"/orders/{order_id}/delivery", json=delivery_body(stack)) as r:
        assert r.status == 409 and (await r.json())["type"].endswith("/already-delivered")


@pytest.mark.parametrize("how", ["magic", "fault"])
async def test_customer_absent_returns_the_vehicle_to_the_dealership_and_a_reschedule_works(factory, how):
    stack, http = factory
    if how == "fault":
        stack.service("factory").faults.add({"action": {"type": "customer_absent"}, "times": 1,
                                             "match": {"selectors": {"reference": "a-1"}}})
    order_id = await arrived(stack, http, order_body("a-1", last_name="Absent" if how == "magic" else "García"))
    async with http.post(f"/orders/{order_id}/delivery", json=delivery_body(stack)) as r:
        first = await r.json()
    slot_end = parse_datetime(first["slot"]["end"])
    await stack.advance(slot_end - stack.clock.now())
    [_, absent] = received(stack, order_id, "DELIVERY_STATUS")
    assert (absent.payload["status"], absent.payload["vehicleLocation"]) == ("CUSTOMER_ABSENT", "RETURNING_TO_DEALERSHIP")
    async with http.post(f"/orders/{order_id}/delivery", json=delivery_body(stack)) as r:
        assert r.status == 409 and (await r.json())["type"].endswith("/delivery-in-progress")
    await stack.advance("3h")
    returned = received(stack, order_id, "DELIVERY_STATUS")[-1]
    assert returned.payload["status"] == "RETURNED_TO_DEALERSHIP" and returned.at == absent.at + 3 * 3600
    order = await get_order(http, order_id)
    assert order["vehicleLocation"] == "DEALERSHIP" and order["delivery"]["status"] == "RETURNED_TO_DEALERSHIP"
    async with http.post(f"/orders/{order_id}/delivery", json=delivery_body(stack)) as r:
        assert r.status == 201
        second = await r.json()
    assert second["attempt"] == 2 and second["deliveryId"] != first["deliveryId"]
    await stack.advance("7d")
    events = [(r.payload["sequence"], r.payload["attempt"], r.payload["status"])
              for r in received(stack, order_id, "DELIVERY_STATUS")]
    assert events == [(1, 1, "OUT_FOR_DELIVERY"), (2, 1, "CUSTOMER_ABSENT"), (3, 1, "RETURNED_TO_DEALERSHIP"),
                      (4, 2, "OUT_FOR_DELIVERY"), (5, 2, "DELIVERED")]
    assert (await get_order(http, order_id))["vehicleLocation"] == "CUSTOMER"


async def test_a_customer_never_home_collects_at_the_dealership(factory):
    stack, http = factory
    order_id = await arrived(stack, http, order_body("n-1", last_name="neverhome"))
    for _ in range(2):
        await http.post(f"/orders/{order_id}/delivery", json=delivery_body(stack))
        await stack.advance("8d")
    statuses = [r.payload["status"] for r in received(stack, order_id, "DELIVERY_STATUS")]
    assert statuses == ["OUT_FOR_DELIVERY", "CUSTOMER_ABSENT", "RETURNED_TO_DEALERSHIP"] * 2
    assert (await get_order(http, order_id))["vehicleLocation"] == "DEALERSHIP"


async def test_delivery_requests_that_cannot_be_served(factory):
    stack, http = factory
    _, early, _ = await place(http, order_body("v-0"))
    async with http.post(f"/orders/{early['orderId']}/delivery", json=delivery_body(stack)) as r:
        problem = await r.json()
        assert r.status == 409 and problem["type"].endswith("/vehicle-not-at-dealership")
        assert early["estimatedDate"] in problem["detail"]
    async with http.post("/orders/ord_00000000000000000000/delivery", json=delivery_body(stack)) as r:
        assert r.status == 404
    async with http.get(f"/orders/{early['orderId']}/delivery") as r:
        assert r.status == 404 and (await r.json())["type"].endswith("/no-delivery")
    order_id = await arrived(stack, http, order_body("v-1"))
    cases = [
        (delivery_body(stack, country="FR"), "outside-delivery-area"),
        (delivery_body(stack, start_in=DAY, length=-3600), "invalid-window"),
        (delivery_body(stack, start_in=-10 * DAY, length=DAY), "invalid-window"),
        (delivery_body(stack, start_in=90 * DAY), "invalid-window"),
        (delivery_body(stack, start_in=3600, length=6 * 3600), "no-slot-available"),
    ]
    for body, kind in cases:
        async with http.post(f"/orders/{order_id}/delivery", json=body) as r:
            problem = await r.json()
            assert (r.status, problem["type"].split("/")[-1]) == (422, kind), problem
    assert parse_datetime(problem["earliestSlotStart"]) >= stack.clock.now() + 48 * 3600
    async with http.post(f"/orders/{order_id}/delivery", json=delivery_body(stack, start_in=20 * DAY)) as r:
        assert r.status == 201


async def test_posting_again_before_the_day_reschedules(factory):
    stack, http = factory
    order_id = await arrived(stack, http, order_body("rs-1"))
    first = await (await http.post(f"/orders/{order_id}/delivery", json=delivery_body(stack))).json()
    second = await (await http.post(f"/orders/{order_id}/delivery", json=delivery_body(stack, start_in=10 * DAY))).json()
    assert second["attempt"] == 2 and second["slot"]["start"] > first["slot"]["start"]
    await stack.advance("20d")
    events = [(r.payload["deliveryId"], r.payload["status"]) for r in received(stack, order_id, "DELIVERY_STATUS")]
    assert events == [(second["deliveryId"], "OUT_FOR_DELIVERY"), (second["deliveryId"], "DELIVERED")]
    journal = stack.service("factory").journal.entries()  # the first delivery stays on record as RESCHEDULED
    assert [e["event"] for e in journal if e.get("event", "").startswith("delivery.")][:3] == [
        "delivery.scheduled", "delivery.rescheduled", "delivery.scheduled"]


async def test_idempotent_replays(factory):
    stack, http = factory
    body = order_body("i-1")
    s1, first, _ = await place(http, body, key="order-i-1")
    s2, again, headers = await place(http, body, key="order-i-1")
    assert (s1, s2, again, headers["Idempotent-Replayed"]) == (201, 201, first, "true")
    status, problem, _ = await place(http, order_body("i-2"), key="order-i-1")
    assert status == 422 and problem["type"].endswith("/idempotency-mismatch")
    assert len((await (await http.get("/orders", params={"reference": "i-1"})).json())["orders"]) == 1
    await stack.advance("60d")
    assert [p["sequence"] for p in notes(stack, first["orderId"])][:2] == [1, 2]  # one ORDER_PLACED
    body = delivery_body(stack)
    responses = []
    for _ in range(2):
        async with http.post(f"/orders/{first['orderId']}/delivery", json=body, headers={"Idempotency-Key": "dl-1"}) as r:
            responses.append((r.status, await r.json()))
    assert responses[0] == responses[1] and responses[0][0] == 201
    assert (await (await http.get(f"/orders/{first['orderId']}/delivery")).json())["attempt"] == 1


async def test_same_seed_same_timeline_and_configurable_stage_durations():
    async def run(seed, options=None):
        async with Stack(services=["factory"], seed=seed, options={"factory": options or {}}) as stack, \
                aiohttp.ClientSession(stack.url("factory")) as http:
            for n in range(5):
                await place(http, order_body(f"s-{n}", options=()))
            await stack.advance("70d")
            return [(r.at, r.payload["orderId"], r.payload["sequence"], r.payload["status"], r.payload["vin"])
                    for r in stack.sink.received]

    first = await run(7)
    assert first == await run(7)
    assert first != await run(8)
    quick = await run(7, {"stage_days": {"slot_wait": [1, 1], "acceptance": [0, 0]}})
    end = lambda timeline: max(at for at, *_ in timeline)
    assert end(quick) < end(first)
    for bad in ({"stage_days": {"slot_wait": [5, 1]}}, {"stage_days": {"warp": [1, 2]}},
                {"delivery": {"open_hour": 20, "close_hour": 8}}):
        with pytest.raises(ValueError):
            await Stack(services=["factory"], options={"factory": bad}).start()


async def test_the_shipped_fault_profile_loads_and_applies():
    from pathlib import Path

    import caas_sim.simulators.factory

    profile = Path(caas_sim.simulators.factory.__file__).parent / "profiles" / "bad-month.yaml"
    async with Stack(services=["factory"], seed=3, fault_profiles={"factory": str(profile)}) as stack, \
            aiohttp.ClientSession(stack.url("factory")) as http:
        statuses = []
        for n in range(40):
            pending = asyncio.ensure_future(place(http, order_body(f"p-{n}", f"ES-P-{n:03d}", options=())))
            await stack.advance("2m")
            statuses.append((await pending)[0])
        await stack.advance("90d")
        applied = {e["ruleId"] for e in stack.service("factory").journal.entries() if e["kind"] == "fault"}
        assert {"order-system-down", "qc-failures", "supplier-delays"} <= applied
        assert set(statuses) <= {201, 503} and statuses.count(201) > 20
        assert stack.violations() == []


async def test_past_the_orders_kept_the_oldest_with_no_stage_ahead_are_forgotten(factory):
    from caas_sim.simulators.factory.api import MODEL_KEY

    stack, http = factory
    stack.running["factory"].app[MODEL_KEY].retention.keep = 1  # ORDERS_KEPT (100,000) in small
    _, first, _ = await place(http, order_body(reference="sale-old"))
    await stack.advance("200d")  # built, shipped, waiting at the dealership (no stage ahead)
    assert (await get_order(http, first["orderId"]))["status"] == "ARRIVED_AT_DEALERSHIP"
    status, second, _ = await place(http, order_body(reference="sale-new"))
    assert status == 201
    await place(http, order_body(reference="sale-newer"))  # forgetting is lazy: before a placement
    async with http.get(f"/orders/{first['orderId']}") as r:
        assert r.status == 404 and r.content_type == "application/problem+json"
    assert (await get_order(http, second["orderId"]))["status"] == "ORDER_PLACED"

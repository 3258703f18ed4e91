"""A purchase's payment against the gateway: one charge per Idempotency-Key however many
requests race for it, nothing charged for a vehicle that is not the customer's, the
gateway down (deferred, then manual), and a request that dies between the charge and its
record. On SQLite and PostgreSQL, in virtual time, against the running simulators."""

import asyncio

from sqlalchemy import update

from caas_core.api.app import CORE_KEY
from caas_core.store import outbox
from caas_core.store.schema import purchases
from caas_sim.simulators.payments.api import MODEL_KEY as PAYMENTS_MODEL
from tests.core import test_service_path as service_path
from tests.core.test_service_path import CARD, as_, buy, purchase

world = service_path.world  # database_url: tests/core/conftest.py
GATEWAY_DOWN = {"id": "gateway-down", "match": {"operation": "initiatePayment"},
                "action": {"type": "http_error", "params": {"status": 503}}}


def _charges(stack) -> list[dict]:
    """Charges the gateway answered 2xx, replays aside: the money actually taken."""
    return [e for e in stack.service("payments").journal.entries() if e["kind"] == "request"
            and e.get("operation") == "initiatePayment" and 200 <= (e.get("status") or 0) < 300]


def _gateway_payments(stack) -> int:
    return len(stack.running["payments"].app[PAYMENTS_MODEL].payments)


async def _post(http, vin, key, customer="c-1", api_key="k-c1", token="pm_card_visa"):
    async with http.post(f"/customers/{customer}/vehicles/{vin}/purchases",
                         headers={**as_(api_key), "Idempotency-Key": key},
                         json={"serviceId": "heated-seats", "durationType": "PERMANENT",
                               "paymentMethod": {**CARD, "token": token}}) as r:
        return r.status, (await r.json() if "json" in r.content_type else await r.text()), r.headers


async def _notices(http, template):
    async with http.get("/customers/c-1/notifications", headers=as_("k-c1")) as r:
        return [n for n in (await r.json())["notifications"] if n["template"] == template]


# --- one charge per Idempotency-Key ------------------------------------------------

async def test_concurrent_requests_with_one_key_make_one_purchase_and_the_rest_409_or_replay(world):
    stack, http, iot, _ = world
    answers = await asyncio.gather(*(_post(http, iot["healthy"], "same-key") for _ in range(20)))
    statuses = sorted(status for status, _, _ in answers)
    assert set(statuses) <= {201, 409} and statuses.count(201) >= 1, statuses
    created = [body for status, body, headers in answers if status == 201 and "Idempotent-Replayed" not in headers]
    assert len(created) == 1  # one first answer; every other 201 is a replay of the same purchase
    assert {body["purchaseId"] for status, body, _ in answers if status == 201} == {created[0]["purchaseId"]}
    for status, body, headers in answers:
        if status == 409:
            assert body["type"].endswith("/idempotency-in-flight") and headers["Content-Type"].startswith(
                "application/problem+json")
    assert _gateway_payments(stack) == 1
    status, again, headers = await _post(http, iot["healthy"], "same-key")
    assert status == 201 and headers["Idempotent-Replayed"] == "true" and again["purchaseId"] == created[0]["purchaseId"]


# --- the vehicle must be the customer's --------------------------------------------

async def test_a_vehicle_the_fleet_does_not_know_is_404_and_nothing_is_charged(world):
    stack, http, iot, _ = world
    unknown = iot["healthy"][:11] + "000000"  # well formed, past the fleet
    status, problem = await buy(http, unknown)
    assert status == 404 and problem["type"].endswith("/unknown-vehicle"), problem
    assert _charges(stack) == []


async def test_another_customers_vehicle_is_404_before_anything_is_charged(world):
    """BOLA: c-2's key, c-2's own path, c-1's car."""
    stack, http, iot, _ = world
    status, _ = await buy(http, iot["healthy"])  # the first purchase links the fleet vehicle to c-1
    assert status == 201
    before = len(_charges(stack))
    status, problem = await buy(http, iot["healthy"], customer="c-2", key="k-c2")
    assert status == 404 and problem["type"].endswith("/unknown-vehicle")
    assert len(_charges(stack)) == before
    status, _ = await buy(http, iot["healthy"], service="premium-audio", customer="c-1",
                          key="k-ops")  # an operator acts for the holder
    assert status == 201


async def test_a_vehicle_never_seen_while_the_iot_api_is_down_is_linked_unverified_and_sold(world):
    """The API IoT down queues activations rather than blocking sales (specification): the
    link is taken on trust, the risk recorded; a vehicle that does not exist fails its
    activation later and is refunded."""
    stack, http, iot, _ = world
    stack.service("iot").faults.add({"match": {"operation": "getVehicleStatus"},
                                     "action": {"type": "http_error", "params": {"status": 503}}})
    status, bought = await buy(http, iot["healthy"])
    assert status == 201, bought
    core = stack.running["core"].app[CORE_KEY]
    async with core.db.transaction(readonly=True) as conn:
        decisions = await outbox.decisions(conn, subject=iot["healthy"])
    assert [d.decision for d in decisions] == ["IOT_UNAVAILABLE_LINKED_UNVERIFIED"]
    status, _ = await buy(http, iot["healthy"], customer="c-2", key="k-c2")
    assert status == 404  # linked all the same: the next customer does not get it


# --- the gateway down: defer, then manual ----------------------------------------------

async def test_a_short_gateway_outage_defers_the_payment_and_delivers_once_charged(world):
    stack, http, iot, _ = world
    stack.service("payments").faults.add(GATEWAY_DOWN)
    status, bought = await buy(http, iot["healthy"])
    assert status == 201 and bought["status"] == "PAYMENT_DEFERRED" and bought["paymentId"] is None
    assert {n["channel"] for n in await _notices(http, "PAYMENT_DEFERRED")} == {"email", "push"}
    await stack.advance("5m")
    still = await purchase(http, bought["purchaseId"])
    assert still["status"] == "PAYMENT_DEFERRED"
    activations = [e for e in stack.service("iot").journal.entries() if e.get("operation") == "activateService"]
    assert activations == []  # nothing is activated unpaid
    stack.service("payments").faults.clear()
    await stack.advance("15m")
    done = await purchase(http, bought["purchaseId"])
    assert done["status"] == "ACTIVE" and done["paymentId"] and len(_charges(stack)) == 1


async def test_a_long_gateway_outage_hands_the_payment_to_an_operator_and_activates_nothing(world):
    stack, http, iot, _ = world
    stack.service("payments").faults.add(GATEWAY_DOWN)
    _, bought = await buy(http, iot["healthy"])
    await stack.advance("2h")
    manual = await purchase(http, bought["purchaseId"])
    assert manual["status"] == "MANUAL_PAYMENT" and manual["paymentId"] is None
    async with http.get("/support/tickets", headers=as_("k-ops")) as r:
        tickets = [t for t in (await r.json())["tickets"] if t["purchaseId"] == bought["purchaseId"]]
    assert len(tickets) == 1 and "by hand" in tickets[0]["subject"]
    assert await _notices(http, "MANUAL_PAYMENT_REQUIRED")
    tries = [e for e in stack.service("payments").journal.entries() if e.get("operation") == "initiatePayment"]
    stack.service("payments").faults.clear()
    await stack.advance("1d")  # handed over: the queue no longer charges it (no double charge with the operator)
    assert len([e for e in stack.service("payments").journal.entries()
                if e.get("operation") == "initiatePayment"]) == len(tries)
    assert not any(e.get("operation") == "activateService" for e in stack.service("iot").journal.entries())
    assert _charges(stack) == []


async def _record_by_hand(http, purchase_id, reference="bank-transfer-0042", value=29900, currency="EUR",
                          key="k-ops"):
    async with http.post(f"/purchases/{purchase_id}/manual-payment", headers=as_(key),
                         json={"reference": reference, "amount": {"value": value, "currency": currency}}) as r:
        return r.status, await r.json()


async def _tickets(http, purchase_id):
    async with http.get("/support/tickets", headers=as_("k-ops")) as r:
        return [t for t in (await r.json())["tickets"] if t["purchaseId"] == purchase_id]


async def test_a_payment_taken_by_hand_is_recorded_by_an_operator_and_the_service_activated(world):
    stack, http, iot, _ = world
    stack.service("payments").faults.add(GATEWAY_DOWN)
    _, bought = await buy(http, iot["healthy"])
    purchase_id = bought["purchaseId"]
    status, early = await _record_by_hand(http, purchase_id)  # still deferred: the queue charges it
    assert status == 409 and early["type"].endswith("/not-awaiting-manual-payment"), early
    await stack.advance("2h")
    stack.service("payments").faults.clear()  # back: the core still leaves it to the operator
    await stack.advance("1h")
    assert (await purchase(http, purchase_id))["status"] == "MANUAL_PAYMENT"
    status, problem = await _record_by_hand(http, purchase_id, key="k-c1")  # operators only
    assert status == 403, problem
    status, problem = await _record_by_hand(http, purchase_id, value=2990)  # not the price
    assert status == 422 and problem["type"].endswith("/amount-mismatch"), problem
    assert problem["price"] == {"value": 29900, "currency": "EUR"}
    status, paid = await _record_by_hand(http, purchase_id)
    assert status == 200 and paid["status"] == "ACTIVATION_QUEUED" and paid["paymentId"], paid
    assert [t["status"] for t in await _tickets(http, purchase_id)] == ["closed"]
    status, again = await _record_by_hand(http, purchase_id)  # the same payment again: changes nothing
    assert status == 200 and again["paymentId"] == paid["paymentId"], again
    status, other = await _record_by_hand(http, purchase_id, reference="bank-transfer-0043")
    assert status == 409 and other["type"].endswith("/not-awaiting-manual-payment"), other
    await stack.advance("5m")
    done = await purchase(http, purchase_id)
    assert done["status"] == "ACTIVE" and done["paymentId"] == paid["paymentId"]
    assert _charges(stack) == []  # the gateway charged nothing: the operator took it
    status, problem = await _record_by_hand(http, "pur_unknown0000")
    assert status == 404, problem


async def test_a_deferred_purchase_withdrawn_is_never_charged(world):
    stack, http, iot, _ = world
    stack.service("payments").faults.add(GATEWAY_DOWN)
    _, bought = await buy(http, iot["healthy"])
    async with http.post(f"/purchases/{bought['purchaseId']}/withdrawal", headers=as_("k-c1")) as r:
        assert r.status == 200 and (await r.json())["status"] == "WITHDRAWN"
    stack.service("payments").faults.clear()
    await stack.advance("1h")
    assert _charges(stack) == [] and (await purchase(http, bought["purchaseId"]))["status"] == "WITHDRAWN"


# --- the request dies between the charge and its record -----------------------------

class DiesAfterTheCharge:
    """The payments client, except that the process 'dies' once the gateway has charged."""

    def __init__(self, real):
        self.real = real

    async def initiate(self, *args, **kwargs):
        await self.real.initiate(*args, **kwargs)
        raise ConnectionResetError("killed between the charge and its record")

    def __getattr__(self, name):
        return getattr(self.real, name)


async def test_a_charge_whose_record_was_lost_is_completed_by_the_queue_with_the_decision_taken(world):
    stack, http, _, vss = world
    core = stack.running["core"].app[CORE_KEY]
    real, core.payments = core.payments, DiesAfterTheCharge(core.payments)
    stack.service("vss").faults.add({"action": {"type": "vss_unavailable"}})  # sold on a recorded risk
    async with http.post(f"/customers/c-1/vehicles/{vss['several_blocks_low']}/purchases",
                         headers={**as_("k-c1"), "Idempotency-Key": "k-1"},
                         json={"serviceId": "performance-boost", "durationType": "TEMPORARY",
                               "paymentMethod": CARD}) as r:
        assert r.status == 500
    core.payments = real
    stack.service("vss").faults.clear()  # VSS answers now, and would refuse: the decision already taken holds
    assert len(_charges(stack)) == 1
    async with http.post(f"/customers/c-1/vehicles/{vss['several_blocks_low']}/purchases",
                         headers={**as_("k-c1"), "Idempotency-Key": "k-1"},
                         json={"serviceId": "performance-boost", "durationType": "TEMPORARY",
                               "paymentMethod": CARD}) as r:
        assert r.status == 409  # the first request's lease still holds it
    await stack.advance("5m")  # the lease lapses: the charge job charges again under the same key (a replay)
    done = await purchase(http, (await _purchases(http))[0]["purchaseId"])
    assert done["status"] in ("ACTIVATION_QUEUED", "ACTIVATING", "ACTIVE") and done["paymentId"]
    assert done["riskDecision"] and _gateway_payments(stack) == 1


async def test_a_retry_after_the_lease_takes_the_charge_over_and_replays(world):
    stack, http, iot, _ = world
    core = stack.running["core"].app[CORE_KEY]
    real, core.payments = core.payments, DiesAfterTheCharge(core.payments)
    status, _, _ = await _post(http, iot["healthy"], "k-2")
    assert status == 500
    core.payments = real
    async with core.db.transaction() as conn:  # the lease lapsed before the charge job's turn came
        await conn.execute(update(purchases).values(charge_lease_until=core.clock.now() - 1))
    status, again, headers = await _post(http, iot["healthy"], "k-2")
    assert status == 201 and again["status"] == "ACTIVATION_QUEUED" and headers["Idempotent-Replayed"] == "true"
    assert _gateway_payments(stack) == 1


async def _purchases(http):
    async with http.get("/customers/c-1/purchases", headers=as_("k-c1")) as r:
        return (await r.json())["purchases"]

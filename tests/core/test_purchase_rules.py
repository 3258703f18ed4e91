"""What a purchase must not do to the customer: switch off a service already paid for,
withdraw twice, replay another request under one Idempotency-Key, lose its risk decision
or warnings, shorten a temporary service's paid period, or sell a subscription on a
payment method the gateway would never charge. End to end, on SQLite and PostgreSQL, in
virtual time, against the running simulators."""

import asyncio
from datetime import datetime

from sqlalchemy import select

from caas_core.api.app import CORE_KEY
from caas_core.store import outbox
from caas_core.store.schema import purchases
from tests.core import test_service_path as service_path
from tests.core.test_service_path import CARD, as_, buy, purchase
from tests.core.test_vehicle_in_step import iot_calls, on_vehicle, out_of_step

world = service_path.world  # database_url: tests/core/conftest.py
DAY = 86_400


def core_of(stack):
    return stack.running["core"].app[CORE_KEY]


def _charges(stack) -> list[dict]:
    return [e for e in stack.service("payments").journal.entries() if e["kind"] == "request"
            and e.get("operation") == "initiatePayment" and 200 <= (e.get("status") or 0) < 300]


async def _withdraw(http, purchase_id, key="k-c1"):
    async with http.post(f"/purchases/{purchase_id}/withdrawal", headers=as_(key)) as r:
        return r.status, r.headers["Content-Type"], await r.json()


async def _notices(http, template):
    async with http.get("/customers/c-1/notifications", headers=as_("k-c1")) as r:
        return [n for n in (await r.json())["notifications"] if n["template"] == template]


# --- 1. a service the vehicle holds is not sold again ------------------------------------

async def test_a_service_the_vehicle_holds_is_not_sold_again_nor_one_that_shares_its_features(world):
    stack, http, iot, _ = world
    vin = iot["healthy"]
    status, permanent = await buy(http, vin)
    assert status == 201
    await stack.advance("1m")
    assert (await purchase(http, permanent["purchaseId"]))["status"] == "ACTIVE"
    for service, duration in (("heated-seats", "TEMPORARY"), ("heated-seats", "SUBSCRIPTION"),
                              ("winter-package", "TEMPORARY")):
        status, problem = await buy(http, vin, service=service, duration=duration)
        assert status == 409 and problem["type"].endswith("/service-already-held"), problem
        assert problem["purchaseId"] == permanent["purchaseId"] and "heated_seats" in problem["detail"]
    assert len(_charges(stack)) == 1  # refused before any charge
    await stack.advance("1m")
    assert on_vehicle(stack, vin) == "ACTIVE"
    assert [s["durationType"] for s in stack.running["iot"].app[service_path.IOT_MODEL].status(vin)
            ["activeServices"] if s["serviceId"] == "heated-seats"] == ["PERMANENT"]
    status, _, _ = await _withdraw(http, permanent["purchaseId"])  # once it has ended, it is for sale again
    assert status == 200
    status, again = await buy(http, vin, duration="TEMPORARY")
    assert status == 201, again


class MeetAtTheFleet:
    """The IoT client, except that the vehicle's status is answered to two requests at once:
    both go on to check the vehicle's services side by side, neither having recorded yet."""

    def __init__(self, core):
        self.real, self.both = core.iot, asyncio.Barrier(2)

    async def vehicle_status(self, *args, **kwargs):
        await self.both.wait()
        return await self.real.vehicle_status(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


async def test_two_purchases_at_once_of_services_sharing_a_feature_sell_one_and_refuse_the_other(world):
    """On PostgreSQL the two requests' transactions run side by side: both could check the
    vehicle's live purchases before either recorded its own, and both be sold."""
    stack, http, _, _ = world
    core = core_of(stack)
    fleet = stack.running["iot"].app[service_path.IOT_MODEL].fleet
    for n in range(5):  # a vehicle each: neither request finds it linked, so both meet at the fleet
        core.iot = MeetAtTheFleet(core)
        vin = fleet.vin_at(1000 + n)
        answers = await asyncio.gather(buy(http, vin), buy(http, vin, duration="TEMPORARY"))
        assert sorted(status for status, _ in answers) == [201, 409], answers
        [(_, sold)] = [a for a in answers if a[0] == 201]
        [(_, problem)] = [a for a in answers if a[0] == 409]
        assert problem["type"].endswith("/service-already-held") and problem["purchaseId"] == sold["purchaseId"]
        core.iot = core.iot.real
    assert len(_charges(stack)) == 5  # one per vehicle: the refused one before any charge


async def test_ending_a_purchase_leaves_on_a_feature_another_live_purchase_holds_and_the_audit_sees_doubles(world):
    """Defence in depth: two live purchases of one service on a vehicle (written here by hand:
    the purchase refuses them); withdrawing one must not switch off the other's feature."""
    stack, http, iot, _ = world
    vin = iot["healthy"]
    _, permanent = await buy(http, vin)
    await stack.advance("1m")
    core = core_of(stack)
    async with core.db.transaction() as conn:
        row = (await conn.execute(select(purchases).where(purchases.c.id == permanent["purchaseId"]))).mappings().one()
        await conn.execute(purchases.insert().values({**row, "id": "pur_second", "duration_type": "TEMPORARY",
                                                      "payment_id": None}))
    assert sorted(await out_of_step(http)) == sorted([permanent["purchaseId"], "pur_second"])
    status, _, withdrawn = await _withdraw(http, "pur_second")
    assert status == 200 and withdrawn["status"] == "WITHDRAWN"
    await stack.advance("1h")
    assert iot_calls(stack, "deactivateService") == [] and on_vehicle(stack, vin) == "ACTIVE"
    async with core.db.transaction(readonly=True) as conn:
        kept = await conn.scalar(select(purchases.c.deactivation_status).where(purchases.c.id == "pur_second"))
    assert kept == "KEPT" and await out_of_step(http) == []
    assert (await purchase(http, permanent["purchaseId"]))["status"] == "ACTIVE"


# --- 2. a purchase is withdrawn once ---------------------------------------------------

async def test_a_withdrawn_purchase_is_not_withdrawn_again_nor_told_twice(world):
    stack, http, iot, _ = world
    _, permanent = await buy(http, iot["healthy"])
    await stack.advance("1m")
    status, _, withdrawn = await _withdraw(http, permanent["purchaseId"])
    assert status == 200 and withdrawn["status"] == "WITHDRAWN"
    told = await _notices(http, "WITHDRAWAL_CONFIRMED")
    for wait in ("1m", "15d"):  # within the 14 days, and after them
        await stack.advance(wait)
        status, content_type, problem = await _withdraw(http, permanent["purchaseId"])
        assert status == 409 and content_type.startswith("application/problem+json"), problem
        assert problem["type"].endswith("/not-withdrawable") and "WITHDRAWN" in problem["detail"]
    assert await _notices(http, "WITHDRAWAL_CONFIRMED") == told
    assert (await purchase(http, permanent["purchaseId"]))["status"] == "WITHDRAWN"


async def test_a_subscription_withdrawn_within_14_days_is_not_cancelled_after_them(world):
    stack, http, iot, _ = world
    _, subscription = await buy(http, iot["healthy"], service="premium-audio", duration="SUBSCRIPTION")
    await stack.advance("1m")
    status, _, withdrawn = await _withdraw(http, subscription["purchaseId"])
    assert status == 200 and withdrawn["status"] == "WITHDRAWN"
    await stack.advance("15d")
    status, content_type, problem = await _withdraw(http, subscription["purchaseId"])
    assert status == 409 and content_type.startswith("application/problem+json"), problem
    assert problem["type"].endswith("/not-withdrawable")
    assert await _notices(http, "SUBSCRIPTION_CANCELLED") == []


# --- 3. one Idempotency-Key, one request ---------------------------------------------------

async def test_an_idempotency_key_reused_with_another_payment_method_is_422(world):
    stack, http, iot, _ = world
    url = f"/customers/c-1/vehicles/{iot['healthy']}/purchases"
    body = {"serviceId": "heated-seats", "durationType": "PERMANENT", "paymentMethod": CARD}
    async with http.post(url, headers={**as_("k-c1"), "Idempotency-Key": "k-1"}, json=body) as r:
        assert r.status == 201
    for method in ({"type": "CARD", "token": "pm_card_mastercard"}, {"type": "BANK_TRANSFER", "token": CARD["token"]}):
        async with http.post(url, headers={**as_("k-c1"), "Idempotency-Key": "k-1"},
                             json={**body, "paymentMethod": method}) as r:
            problem = await r.json()
            assert r.status == 422 and problem["type"].endswith("/idempotency-mismatch"), problem
            assert "Idempotent-Replayed" not in r.headers
    async with http.post(url, headers={**as_("k-c1"), "Idempotency-Key": "k-1"}, json=body) as r:
        assert r.status == 201 and r.headers["Idempotent-Replayed"] == "true"
    assert len(_charges(stack)) == 1


# --- 4. a vehicle VSS does not know ---------------------------------------------------------

async def test_a_vehicle_unknown_to_vss_is_sold_with_its_own_risk_decision(world):
    _stack, http, _, vss = world
    status, bought = await buy(http, vss["unknown_in_vss"], service="performance-boost", duration="TEMPORARY")
    assert status == 201, bought
    assert bought["riskDecision"] == "VSS_VEHICLE_UNKNOWN_ALLOWED" and "MAINTENANCE_UNVERIFIED" in bought["warnings"]
    assert (await purchase(http, bought["purchaseId"]))["riskDecision"] == "VSS_VEHICLE_UNKNOWN_ALLOWED"


# --- 5. the warnings stay with the purchase ---------------------------------------------------

async def test_the_warnings_shown_at_purchase_are_shown_on_every_read(world):
    _stack, http, _, vss = world
    status, bought = await buy(http, vss["warranty_expired"], service="track-mode", duration="TEMPORARY")
    assert status == 201 and bought["warnings"] == ["WARRANTY_EXPIRED"], bought
    assert (await purchase(http, bought["purchaseId"]))["warnings"] == ["WARRANTY_EXPIRED"]
    async with http.get("/customers/c-1/purchases", headers=as_("k-c1")) as r:
        [listed] = (await r.json())["purchases"]
    assert listed["warnings"] == ["WARRANTY_EXPIRED"]


# --- 6. a temporary service's period counts from its delivery ---------------------------------

def _instant(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def test_a_temporary_service_delayed_by_an_iot_outage_runs_its_whole_period_from_delivery(world):
    stack, http, iot, _ = world
    vin = iot["healthy"]
    stack.service("iot").faults.add({"id": "iot-down", "match": {"operation": "activateService"},
                                     "action": {"type": "http_error", "params": {"status": 503}}})
    status, bought = await buy(http, vin, duration="TEMPORARY")
    assert status == 201 and bought["expiresAt"] is None  # not delivered: no period running yet
    await stack.advance("3h")
    assert (await purchase(http, bought["purchaseId"]))["expiresAt"] is None
    stack.service("iot").faults.clear()
    await stack.advance("1h")
    done = await purchase(http, bought["purchaseId"])
    assert done["status"] == "ACTIVE", done
    period = _instant(done["expiresAt"]) - _instant(done["deliveredAt"])
    assert 30 * DAY - 60 <= period <= 30 * DAY, period / 3600  # the push's time to the callback aside
    assert _instant(done["expiresAt"]) - _instant(bought["createdAt"]) > 30 * DAY + 3 * 3600
    [on_car] = [s for s in stack.running["iot"].app[service_path.IOT_MODEL].status(vin)["activeServices"]
                if s["serviceId"] == "heated-seats"]
    assert _instant(on_car["expiryDate"]) == _instant(done["expiresAt"])  # the vehicle's expiry is the one billed
    # a minute before its expiry (past purchase + 30 days): still running, not cut short by the outage
    await stack.advance(f"{int(_instant(done['expiresAt']) - core_of(stack).clock.now()) - 60}s")
    assert (await purchase(http, bought["purchaseId"]))["status"] == "ACTIVE"
    await stack.advance("2m")
    assert (await purchase(http, bought["purchaseId"]))["status"] == "EXPIRED"


# --- 7. a subscription's payment method is checked before it is sold --------------------------

async def _subscribe(http, vin, token):
    async with http.post(f"/customers/c-1/vehicles/{vin}/purchases", headers=as_("k-c1"),
                         json={"serviceId": "premium-audio", "durationType": "SUBSCRIPTION",
                               "paymentMethod": {**CARD, "token": token}}) as r:
        return r.status, await r.json()


async def test_a_subscription_on_a_payment_method_the_gateway_would_never_charge_is_refused(world):
    stack, http, iot, _ = world
    for token, kind in (("pm_nope", "payment-refused"), ("pm_card_expired", "payment-declined"),
                        ("pm_bank_sepa", "payment-refused")):  # a bank account given as a CARD
        status, problem = await _subscribe(http, iot["healthy"], token)
        assert status == 422 and problem["type"].endswith(f"/{kind}"), (token, problem)
        assert token in problem["detail"]
    await stack.advance("1h")
    async with http.get("/customers/c-1/purchases", headers=as_("k-c1")) as r:
        assert (await r.json())["purchases"] == []
    assert iot_calls(stack, "activateService") == []
    status, subscribed = await _subscribe(http, iot["healthy"], "pm_card_visa")
    assert status == 201 and subscribed["status"] == "ACTIVATION_QUEUED"


async def test_a_subscription_sold_while_the_gateway_cannot_check_its_method_records_the_risk(world):
    """The specification's "defer payment, manual fallback": nothing is charged before the
    month ends, so the sale goes ahead and the risk is in the audit log."""
    stack, http, iot, _ = world
    stack.service("payments").faults.add({"match": {"operation": "getPaymentMethod"},
                                          "action": {"type": "http_error", "params": {"status": 503}}})
    status, subscribed = await _subscribe(http, iot["healthy"], "pm_card_visa")
    assert status == 201 and subscribed["status"] == "ACTIVATION_QUEUED", subscribed
    assert subscribed["riskDecision"] is None  # the maintenance decision: none taken
    async with core_of(stack).db.transaction(readonly=True) as conn:
        decisions = await outbox.decisions(conn, subject=subscribed["purchaseId"])
    assert [(d.kind, d.decision) for d in decisions] == [("payment", "PAYMENT_METHOD_UNVERIFIED_ALLOWED")]

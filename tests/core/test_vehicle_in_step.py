"""Money and vehicles in step (issue 22): what the customer pays for is what runs on the vehicle.

The vehicle is the ground truth of what runs on it (``GET /vehicles/{vin}/status``), and a
service is a reversible feature flag: a purchase that ends (withdrawn, expired, cancelled,
given up) has its feature switched off, retried like an activation; callbacks that
contradict each other are settled by asking the vehicle; and the audit reports a purchase
whose state differs from the vehicle's. Each end-to-end test runs the core against the IoT,
VSS and payment simulators, on SQLite and on PostgreSQL, in virtual time.
"""

import pytest
from sqlalchemy import select

from caas_core.api.app import CORE_KEY
from caas_core.domain.ota_policy import (
    ActivationProgress,
    AttemptOutcome,
    CallbackAction,
    DeactivationStep,
    ReconcileAction,
    RetryPolicy,
    reconcile,
    route_activation_callback,
    switch_off_on_withdrawal,
)
from caas_core.domain.purchase import PurchaseState as S
from caas_core.store import jobs
from caas_core.store.schema import purchases
from caas_sim.simulators.iot.api import MODEL_KEY as IOT_MODEL
from tests.core import test_service_path as service_path
from tests.core.test_service_path import as_, buy, purchase

world = service_path.world  # database_url: tests/core/conftest.py


def core_of(stack):
    return stack.running["core"].app[CORE_KEY]


def on_vehicle(stack, vin, service_id="heated-seats"):
    """The service's status as the IoT simulator's vehicle has it (None: not listed, i.e. off)."""
    status = stack.running["iot"].app[IOT_MODEL].status(vin)
    return next((s["status"] for s in status["activeServices"] if s["serviceId"] == service_id), None)


def iot_calls(stack, operation):
    return [e for e in stack.service("iot").journal.entries()
            if e["kind"] == "request" and e.get("operation") == operation]


async def row_of(stack, purchase_id):
    async with core_of(stack).db.transaction(readonly=True) as conn:
        return (await conn.execute(select(purchases).where(purchases.c.id == purchase_id))).mappings().first()


async def tickets(http):
    async with http.get("/support/tickets", headers=as_("k-ops")) as r:
        return (await r.json())["tickets"]


async def out_of_step(http):
    """The purchase ids the audit reports under ``vehicle_in_step``."""
    async with http.get("/__admin/audit") as r:
        assert r.status == 200
        report = await r.json()
    return sorted(v["entities"]["purchaseId"] for v in report["violations"] if v["invariant"] == "vehicle_in_step")


def offline(vin, until, since=None):
    window = {"until": until, **({"from": since} if since else {})}
    return {"id": "offline", "match": {"selectors": {"vin": vin}}, "action": {"type": "vehicle_offline"},
            "window": window}


async def withdraw(http, purchase_id):
    async with http.post(f"/purchases/{purchase_id}/withdrawal", headers=as_("k-c1")) as r:
        body = await r.json()
        assert r.status == 200, body
    return body


# --- (a) a withdrawal whose deactivation meets an offline vehicle is retried until it is off ---

async def test_a_withdrawn_service_is_switched_off_once_the_offline_vehicle_is_back(world):
    stack, http, iot, _ = world
    vin = iot["healthy"]
    _, bought = await buy(http, vin)
    await stack.advance("1m")
    assert (await purchase(http, bought["purchaseId"]))["status"] == "ACTIVE" and on_vehicle(stack, vin) == "ACTIVE"

    stack.service("iot").faults.add(offline(vin, "+5m"))  # unreachable for the first two deactivation attempts
    assert (await withdraw(http, bought["purchaseId"]))["status"] == "WITHDRAWN"
    await stack.advance("2m")
    assert on_vehicle(stack, vin) == "ACTIVE"  # the first attempt failed VEHICLE_OFFLINE: still on

    await stack.advance("30m")  # retried after 1 and 5 minutes: the third attempt reaches it
    assert on_vehicle(stack, vin) is None  # the feature is off on the vehicle
    row = await row_of(stack, bought["purchaseId"])
    assert row["deactivation_status"] == "OFF" and row["deactivated_at"] is not None
    assert row["deactivation_attempts"] == 3 and len(iot_calls(stack, "deactivateService")) == 3
    assert await tickets(http) == [] and await out_of_step(http) == []


# --- (b) offline past every retry: a ticket with the vehicle's diagnostics, and the audit says so ---

async def test_a_vehicle_offline_past_every_deactivation_retry_opens_a_ticket_and_the_audit_reports_it(world):
    stack, http, iot, _ = world
    vin = iot["healthy"]
    _, bought = await buy(http, vin)
    await stack.advance("1m")
    stack.service("iot").faults.add(offline(vin, "+6h"))
    await withdraw(http, bought["purchaseId"])
    await stack.advance("2h")  # 4 attempts (waits of 1, 5 and 15 minutes), all VEHICLE_OFFLINE

    assert on_vehicle(stack, vin) == "ACTIVE"  # refunded, and the vehicle still runs it
    assert len(iot_calls(stack, "deactivateService")) == 4
    [ticket] = await tickets(http)
    assert ticket["purchaseId"] == bought["purchaseId"] and ticket["vin"] == vin
    assert "deactivation" in ticket["subject"] and "WITHDRAWN" in ticket["subject"]
    diagnostics = ticket["diagnostics"]
    assert diagnostics["connectivity"] == "OFFLINE" and diagnostics["serviceStatusOnVehicle"] == "ACTIVE"
    assert diagnostics["attempts"] == 4 and diagnostics["lastError"] in ("VEHICLE_OFFLINE", "TIMEOUT")
    assert diagnostics["priority"] == "HIGH"
    row = await row_of(stack, bought["purchaseId"])
    assert row["deactivation_status"] == "FAILED" and row["deactivated_at"] is None
    assert await out_of_step(http) == [bought["purchaseId"]]  # deactivation outstanding


# --- (c) a late ACTIVATED against a later attempt that failed offline: the vehicle decides ---

@pytest.mark.parametrize("late", [150, 300], ids=["while-the-next-attempt-is-in-flight", "after-it-failed"])
async def test_a_late_activation_callback_conflicting_with_a_failed_attempt_ends_with_core_and_vehicle_agreeing(
        world, late):
    """Attempt 1 is applied but its callback is ``late`` seconds late; the core times it out and
    retries after 1 minute; attempt 2 replaces it on the vehicle and fails offline (the vehicle
    marks the service ERROR). The late ACTIVATED of attempt 1 must not make the purchase
    ACTIVE: the vehicle does not run it. The core asks the vehicle and goes on retrying;
    attempt 3 (5 minutes later, the vehicle back) delivers it on both sides."""
    stack, http, iot, _ = world
    vin = iot["healthy"]
    faults = stack.service("iot").faults
    faults.add({"id": "late", "match": {"selectors": {"vin": vin}},
                "action": {"type": "callback_delayed", "params": {"seconds": late}}, "times": 1})
    faults.add(offline(vin, "+6m", since="+90s"))  # attempt 2 (at +2 min) fails VEHICLE_OFFLINE
    _, bought = await buy(http, vin)

    await stack.advance(f"{late + 10}s")  # the late callback is in
    early = await purchase(http, bought["purchaseId"])
    assert early["status"] != "ACTIVE" and on_vehicle(stack, vin) in ("PENDING", "ERROR")
    assert len(iot_calls(stack, "getVehicleStatus")) == 2  # at the purchase, and to settle the conflict

    await stack.advance("15m")
    done = await purchase(http, bought["purchaseId"])
    assert done["status"] == "ACTIVE" and done["attempts"] == 3 and done["refunded"]["value"] == 0
    assert on_vehicle(stack, vin) == "ACTIVE"  # the core and the vehicle agree
    async with http.get("/customers/c-1/notifications", headers=as_("k-c1")) as r:
        told = [n["channel"] for n in (await r.json())["notifications"] if n["template"] == "SERVICE_ACTIVATED"]
    assert sorted(told) == ["email", "in_vehicle", "push"]  # once, when it was really delivered
    assert await tickets(http) == [] and await out_of_step(http) == []


# --- (d) the audit reports a purchase out of step with its vehicle ---

async def test_the_audit_reports_purchases_out_of_step_with_the_vehicle(world):
    stack, http, _, _ = world
    core = core_of(stack)
    now = core.clock.now()

    def row(pid, status, **extra):
        return {"id": pid, "customer_id": "c-1", "vin": "WCAC6SN32SZ999908", "service_id": "heated-seats",
                "duration_type": "PERMANENT", "price_minor": 29900, "currency": "EUR", "status": status,
                "created_at": now, "updated_at": now, **extra}

    async with core.db.transaction() as conn:
        for values in [
            # withdrawn after delivery, and nobody ever switched it off: out of step
            row("pur-left", "WITHDRAWN", delivered_at=now, attempts=1),
            # refunded after every deactivation attempt failed: out of step (support has the ticket)
            row("pur-fail", "REFUNDED", attempts=2, deactivation_status="FAILED", deactivation_round=1),
            # paid, ACTIVE for the customer, ERROR on the vehicle: out of step
            row("pur-errd", "ACTIVE", delivered_at=now, attempts=1, vehicle_service_status="ERROR",
                vehicle_checked_at=now),
            # in step: confirmed off; being switched off; never reached the vehicle; given up, ERROR there
            row("pur-off", "EXPIRED", delivered_at=now, attempts=1, deactivation_status="OFF", deactivated_at=now),
            row("pur-busy", "CANCELLED", delivered_at=now, attempts=1, deactivation_status="PENDING"),
            row("pur-none", "WITHDRAWN"),
            row("pur-gave", "ACTIVATION_FAILED", attempts=4, deactivation_status="OFF", deactivated_at=now,
                vehicle_service_status="ERROR"),
            row("pur-runs", "ACTIVE", delivered_at=now, attempts=1, vehicle_service_status="ACTIVE",
                service_id="premium-audio"),  # one ACTIVE purchase per service on a vehicle
        ]:
            await conn.execute(purchases.insert().values(**values))
        await jobs.enqueue(conn, "ota.deactivate", {"purchaseId": "pur-busy"}, run_at=now + 3600, now=now,
                           dedupe_key="ota.deactivate:pur-busy")
    assert await out_of_step(http) == ["pur-errd", "pur-fail", "pur-left"]


# --- the decisions, pure ---------------------------------------------------------------

POLICY = RetryPolicy()


def test_deactivation_is_retried_with_the_activation_backoff_then_given_up():
    p = ActivationProgress(queued_at=0.0)
    waits = []
    for n in range(1, 5):
        d = POLICY.decide_deactivation(p, AttemptOutcome.failed("VEHICLE_OFFLINE"), now=1000.0 * n)
        p = d.progress
        if d.step is DeactivationStep.RETRY:
            waits.append(d.retry_at - 1000.0 * n)
    assert waits == [60.0, 300.0, 900.0] and d.step is DeactivationStep.GIVE_UP and p.vehicle_attempts == 4
    assert POLICY.decide_deactivation(ActivationProgress(0.0), AttemptOutcome.deactivated(), 5).step \
        is DeactivationStep.OFF
    assert POLICY.decide_deactivation(ActivationProgress(0.0), AttemptOutcome.http(422), 5).step \
        is DeactivationStep.OFF  # not active on the vehicle: off already
    assert POLICY.decide_deactivation(ActivationProgress(0.0), AttemptOutcome.http(404), 5).step \
        is DeactivationStep.GIVE_UP


def test_an_unavailable_iot_api_is_retried_until_the_deadline_without_spending_attempts():
    d = POLICY.decide_deactivation(ActivationProgress(0.0), AttemptOutcome.http(503, retry_after=600), now=10.0)
    assert d.step is DeactivationStep.RETRY and d.retry_at == 610.0 and d.progress.vehicle_attempts == 0
    late = POLICY.decide_deactivation(ActivationProgress(0.0, unavailable_retries=30), AttemptOutcome.timeout(),
                                      now=POLICY.deadline)
    assert late.step is DeactivationStep.GIVE_UP


def test_which_callbacks_the_vehicle_must_settle():
    route = route_activation_callback
    assert route(S.ACTIVATING, True, latest=True, in_flight=True) is CallbackAction.DECIDE
    assert route(S.ACTIVATION_QUEUED, True, latest=True, in_flight=False) is CallbackAction.DECIDE  # after our timeout
    assert route(S.ACTIVATING, True, latest=False, in_flight=False) is CallbackAction.RECONCILE  # superseded
    assert route(S.ACTIVATION_QUEUED, True, latest=False, in_flight=False) is CallbackAction.RECONCILE
    assert route(S.ACTIVATION_QUEUED, False, latest=True, in_flight=False) is CallbackAction.IGNORE  # counted
    assert route(S.ACTIVE, False, latest=False, in_flight=False) is CallbackAction.RECONCILE
    assert route(S.ACTIVE, True, latest=False, in_flight=False) is CallbackAction.IGNORE
    assert route(S.REFUNDED, True, latest=True, in_flight=False) is CallbackAction.DEACTIVATE
    assert route(S.WITHDRAWN, True, latest=True, in_flight=False, deactivation_pending=True) is CallbackAction.IGNORE
    assert reconcile(S.ACTIVATING, "ACTIVE") is ReconcileAction.DELIVER
    assert reconcile(S.ACTIVATION_QUEUED, "ERROR") is ReconcileAction.WAIT
    assert reconcile(S.ACTIVATION_QUEUED, "PENDING") is ReconcileAction.WAIT
    assert reconcile(S.ACTIVE, "ABSENT") is ReconcileAction.ESCALATE
    assert reconcile(S.ACTIVE, "ACTIVE") is ReconcileAction.IN_STEP
    assert switch_off_on_withdrawal(S.ACTIVATION_QUEUED, attempts=1, unavailable_retries=0)
    assert not switch_off_on_withdrawal(S.ACTIVATION_QUEUED, attempts=0, unavailable_retries=0)
    assert not switch_off_on_withdrawal(S.PAYMENT_INITIATED, attempts=0, unavailable_retries=0)

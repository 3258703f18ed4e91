"""A refund the payment gateway reports FAILED, end to end in virtual time (issue 22).

The money came in (the payment settled) and could not be paid back (the test card
``pm_card_refund_fails``: every refund FAILED ``CARD_CLOSED``): an operator ticket to
refund by hand and a notice to the customer, once per refund however often the outcome
is delivered. A refund that failed because the payment never settled gives nothing back
and opens nothing."""

import time
from datetime import UTC, datetime

import aiohttp
import jsonschema_rs
import orjson
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from caas_core.api.app import CORE_KEY
from caas_core.settings import DEVELOPMENT_SECRET
from caas_core.store.schema import payments, refunds, webhook_inbox
from caas_sim.scenarios.stack import CORE_WEBHOOK_PATHS, Stack
from caas_sim.simulators.kit.contract import CONTRACTS_DIR, Contract
from tests.core import test_sale_journey as sale_journey
from tests.core import test_service_path as service_path
from tests.core.test_service_path import as_, purchase

world = service_path.world  # database_url: tests/core/conftest.py

CORE = Contract(CONTRACTS_DIR / "core.yaml")
MANUAL_ACTION = jsonschema_rs.Draft202012Validator(
    CORE._deref(CORE.doc["components"]["schemas"]["ManualActionDiagnostics"]), validate_formats=True)


def manual_action_errors(diagnostics):
    return [f"/{'/'.join(map(str, e.instance_path))}: {e.message}" for e in MANUAL_ACTION.iter_errors(diagnostics)]


async def buy(http, vin, token):
    async with http.post(f"/customers/c-1/vehicles/{vin}/purchases", headers=as_("k-c1"),
                         json={"serviceId": "heated-seats", "durationType": "PERMANENT",
                               "paymentMethod": {"type": "CARD", "token": token}}) as r:
        body = await r.json()
        assert r.status == 201, body
        return body


async def withdraw(http, purchase_id):
    async with http.post(f"/purchases/{purchase_id}/withdrawal", headers=as_("k-c1")) as r:
        body = await r.json()
        assert r.status == 200, body
        return body


async def tickets(http):
    async with http.get("/support/tickets", headers=as_("k-ops")) as r:
        assert r.status == 200
        return (await r.json())["tickets"]


async def notices(http, template, customer="c-1", key="k-c1"):
    async with http.get(f"/customers/{customer}/notifications", headers=as_(key)) as r:
        return sorted(n["channel"] for n in (await r.json())["notifications"] if n["template"] == template)


def core_db(stack):
    return stack.running["core"].app[CORE_KEY].db


async def payment_status(stack, purchase_id):
    async with core_db(stack).transaction(readonly=True) as conn:
        return await conn.scalar(select(payments.c.status).where(payments.c.purchase_id == purchase_id))


async def refund_outcomes(stack):
    """The payments webhooks about refunds the core received: (webhook id, body, outcome)."""
    async with core_db(stack).transaction(readonly=True) as conn:
        rows = (await conn.execute(select(webhook_inbox.c.webhook_id, webhook_inbox.c.payload, webhook_inbox.c.outcome)
                                   .where(webhook_inbox.c.source == "payments"))).all()
    found = [(w, orjson.loads(p) if isinstance(p, str | bytes) else p, o) for w, p, o in rows]
    return [(w, body, o) for w, body, o in found if body.get("event") == "refundStatus"]


async def until(stack, check, *, within="10d", step="1h"):
    from caas_sim.simulators.kit.durations import parse_duration

    deadline = stack.clock.now() + parse_duration(within)
    while not (found := await check()):
        assert stack.clock.now() < deadline, f"not within {within}"
        await stack.advance(step)
    return found


async def redeliver(http, body, webhook_id):
    raw = orjson.dumps(body)
    sent = int(time.time())
    headers = {"webhook-id": webhook_id, "webhook-timestamp": str(sent), "content-type": "application/json",
               "webhook-signature": Webhook(DEVELOPMENT_SECRET).sign(webhook_id, datetime.fromtimestamp(sent, tz=UTC),
                                                                     raw.decode())}
    async with http.post(CORE_WEBHOOK_PATHS["payments"], data=raw, headers=headers) as r:
        assert r.status == 204, await r.text()


async def test_a_refund_failed_of_a_settled_payment_opens_a_ticket_and_tells_the_customer_once(world):
    stack, http, iot, _ = world
    bought = await buy(http, iot["healthy"], "pm_card_refund_fails")
    await until(stack, lambda: _settled(stack, bought["purchaseId"]), within="3d")  # the money came in
    withdrawn = await withdraw(http, bought["purchaseId"])
    assert withdrawn["status"] == "WITHDRAWN" and withdrawn["refundPending"] == bought["price"]
    assert await tickets(http) == []

    [ticket] = await until(stack, lambda: tickets(http), within="3d")  # the refund's outcome arrives
    [(webhook_id, outcome_body, outcome)] = await refund_outcomes(stack)
    assert (outcome_body["status"], outcome_body["failureReason"]) == ("FAILED", "CARD_CLOSED")
    assert outcome == "refund FAILED (CARD_CLOSED): ticket opened to refund by hand"
    assert manual_action_errors(ticket["diagnostics"]) == []
    assert ticket["purchaseId"] == bought["purchaseId"] and ticket["customerId"] == "c-1" \
        and ticket["vin"] == iot["healthy"] and ticket["status"] == "open" and "by hand" in ticket["subject"]
    diagnostics = ticket["diagnostics"]
    assert diagnostics["paymentId"] == outcome_body["paymentId"] and diagnostics["refundId"] == outcome_body["refundId"]
    assert diagnostics["amount"] == bought["price"] and diagnostics["failureReason"] == "CARD_CLOSED"
    assert diagnostics["purchaseId"] == bought["purchaseId"] and diagnostics["error"]
    assert await notices(http, "REFUND_FAILED") == ["email", "push"]

    after = await purchase(http, bought["purchaseId"])  # nothing was given back, nothing is pending
    assert after["status"] == "WITHDRAWN" and after["refunded"]["value"] == 0 and after["refundPending"]["value"] == 0

    # The same outcome again: redelivered under its webhook-id (the inbox drops it) and under a
    # new one (the refund is FAILED already): still one ticket, one notice per channel.
    await redeliver(http, outcome_body, webhook_id)
    await redeliver(http, outcome_body, "msg_refund_outcome_again")
    await stack.advance("1m")
    assert len(await tickets(http)) == 1 and await notices(http, "REFUND_FAILED") == ["email", "push"]
    outcomes = {w: o for w, _, o in await refund_outcomes(stack)}
    assert outcomes["msg_refund_outcome_again"] == "refund FAILED (already recorded)"
    assert (await purchase(http, bought["purchaseId"]))["refunded"]["value"] == 0


async def _settled(stack, purchase_id):
    return await payment_status(stack, purchase_id) == "SETTLED"


@pytest.mark.parametrize("outcome_first", [False, True], ids=["in-order", "refund-outcome-first"])
async def test_a_refund_failed_because_the_payment_never_settled_opens_nothing(world, outcome_first):
    stack, http, iot, _ = world
    bought = await buy(http, iot["healthy"], "pm_card_settlement_fails")
    await withdraw(http, bought["purchaseId"])  # at once: the refund waits for the settlement, which fails
    await stack.advance("1h")
    assert await payment_status(stack, bought["purchaseId"]) not in ("SETTLED", "FAILED")  # not settled yet
    if outcome_first:  # the refund's outcome overtakes the failed settlement on the way
        async with core_db(stack).transaction(readonly=True) as conn:
            payment_id, refund_id, amount = (await conn.execute(
                select(payments.c.gateway_payment_id, refunds.c.id, refunds.c.amount_minor)
                .join(refunds, refunds.c.payment_id == payments.c.id)
                .where(payments.c.purchase_id == bought["purchaseId"]))).one()
        await redeliver(http, {"event": "refundStatus", "sequence": 9, "refundId": refund_id, "paymentId": payment_id,
                               "status": "FAILED", "amount": {"value": amount, "currency": "EUR"},
                               "failureReason": "PAYMENT_FAILED", "completedAt": "2026-01-08T10:00:00.000Z"},
                        "msg_refund_outcome_first")
        await stack.advance("1m")
        assert await payment_status(stack, bought["purchaseId"]) not in ("SETTLED", "FAILED")
        assert await tickets(http) == []
    await stack.advance("3d")
    assert await payment_status(stack, bought["purchaseId"]) == "FAILED"
    failed = {w: (body["failureReason"], outcome) for w, body, outcome in await refund_outcomes(stack)}
    if outcome_first:
        assert failed.pop("msg_refund_outcome_first") == ("PAYMENT_FAILED",
                                                          "refund FAILED (PAYMENT_FAILED): nothing to give back")
        assert list(failed.values()) == [("PAYMENT_FAILED", "refund FAILED (already recorded)")]
    else:  # the gateway did say FAILED: nothing came in
        assert list(failed.values()) == [("PAYMENT_FAILED", "refund FAILED")]
    assert await tickets(http) == [] and await notices(http, "REFUND_FAILED") == []
    after = await purchase(http, bought["purchaseId"])
    assert after["refunded"]["value"] == 0 and after["refundPending"]["value"] == 0


# --- a vehicle sale's refund ----------------------------------------------------------

@pytest.fixture
async def sale_world(tmp_path):
    stack = Stack(services=sale_journey.SERVICES, seed=0,
                  core={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", "api_keys": sale_journey.KEYS})
    async with stack, aiohttp.ClientSession(stack.url("core")) as http:
        yield stack, sale_journey.Api(http)
        assert stack.violations() == []  # the core broke no simulator's contract
        # (Not the core's audit, unlike test_sale_journey's world: money a failed refund could
        # not give back is still held, and the audit's money_adds_up_per_customer says so.)


async def test_the_refund_of_a_rejected_orders_reservation_failing_is_refunded_by_hand(sale_world):
    stack, api = sale_world
    sale_id = await api.sell(dealership="k-reject")
    status, sale = await api.reserve(sale_id, token="pm_card_refund_fails")
    assert status == 200 and sale["status"] == "ORDER_REJECTED", sale  # the reservation's refund is asked for

    async def opened():
        return (await api.call("GET", "/support/tickets", "k-ops"))[1]["tickets"]

    [ticket] = await until(stack, opened, within="5d")
    assert manual_action_errors(ticket["diagnostics"]) == []
    [refund] = (await api.file(sale_id))["refunds"]
    assert ticket["diagnostics"]["saleId"] == sale_id and ticket["diagnostics"]["refundId"] == refund["refundId"]
    assert ticket["diagnostics"]["amount"] == refund["amount"] == {"value": 150_000, "currency": "EUR"}
    assert ticket["diagnostics"]["failureReason"] == "CARD_CLOSED" and ticket["purchaseId"] is None
    assert (await api.templates()).count("REFUND_FAILED") == 1
    assert "REFUND_FAILED" in [e["event"] for e in (await api.file(sale_id))["history"]]


def test_the_contracts_manual_action_schema_names_the_refund_failure_keys():
    assert manual_action_errors({"error": "x", "paymentId": "pay_1", "refundId": "re_1", "failureReason": "CARD_CLOSED",
                                 "amount": {"value": 100, "currency": "EUR"}, "purchaseId": "pur_1"}) == []
    assert manual_action_errors({"error": "x", "refundId": ""}) != []
    assert manual_action_errors({"error": "x", "amount": {"value": 1.5, "currency": "EUR"}}) != []


"""Subscriptions are post-paid (mes vencido): month-end invoices charged on the clock,
retried with backoff, cancelled into collection when every retry fails, and the partial
month charged when the customer cancels (issue 6). An invoice's period is the part of the
month it bills: from the subscription's activation, to its cancellation (issue 15)."""

import pytest
from sqlalchemy import select

from caas_core.api.app import CORE_KEY
from caas_core.clock import isoformat
from caas_core.store.schema import collection_cases
from tests.core import test_service_path as service_path
from tests.core.test_service_path import as_, buy, purchase

# the service path's world: the core against the IoT, VSS and payment simulators, on both databases
world = service_path.world  # database_url: tests/core/conftest.py

MONTHLY = 499  # heated-seats, per month


async def invoices(http, purchase_id):
    async with http.get(f"/purchases/{purchase_id}/invoices", headers=as_("k-c1")) as r:
        assert r.status == 200
        return (await r.json())["invoices"]


async def subscribe(stack, http, iot):
    status, bought = await buy(http, iot["healthy"], duration="SUBSCRIPTION")
    assert status == 201 and bought["paymentId"] is None  # nothing is charged up front
    await stack.advance("1m")
    assert (await purchase(http, bought["purchaseId"]))["status"] == "ACTIVE"
    return bought["purchaseId"]


def decline_subscriptions(stack, times=None):
    rule = {"id": "declines", "action": {"type": "authorization_declined", "params": {"reason": "INSUFFICIENT_FUNDS"}},
            "match": {"selectors": {"paymentType": "SUBSCRIPTION"}}}
    if times:
        rule["times"] = times
    stack.service("payments").faults.add(rule)


async def test_month_end_invoices_the_consumed_part_then_whole_months(world):
    stack, http, iot, _ = world
    purchase_id = await subscribe(stack, http, iot)  # 5 January, 08:00
    assert await invoices(http, purchase_id) == []
    await stack.advance("27d")  # past 1 February
    first, = await invoices(http, purchase_id)
    # 26 days 16 hours of January's 31 days, rounded half up: billed from the activation on
    assert first["status"] == "PAID" and first["periodStart"] == (await purchase(http, purchase_id))["deliveredAt"]
    assert first["periodStart"].startswith("2026-01-05") and first["periodEnd"].startswith("2026-02-01")
    assert 425 <= first["amount"]["value"] <= 432 and first["failedAttempts"] == 0
    await stack.advance("28d")  # past 1 March
    second = (await invoices(http, purchase_id))[1]
    assert second["amount"]["value"] == MONTHLY and second["status"] == "PAID"
    assert second["periodStart"].startswith("2026-02-01T00:00:00") and second["periodEnd"].startswith("2026-03-01")


async def test_a_declined_charge_is_retried_and_the_retry_succeeds(world):
    stack, http, iot, _ = world
    purchase_id = await subscribe(stack, http, iot)
    decline_subscriptions(stack, times=1)
    await stack.advance("27d")
    invoice, = await invoices(http, purchase_id)
    assert invoice["status"] == "OPEN" and invoice["failedAttempts"] == 1
    await stack.advance("1d")  # the first retry, a day later
    invoice, = await invoices(http, purchase_id)
    assert invoice["status"] == "PAID" and invoice["failedAttempts"] == 1
    assert (await purchase(http, purchase_id))["status"] == "ACTIVE"


async def test_every_retry_failing_cancels_the_subscription_and_opens_a_collection_case(world):
    stack, http, iot, _ = world
    purchase_id = await subscribe(stack, http, iot)
    decline_subscriptions(stack)
    await stack.advance("27d")
    await stack.advance("8d")  # retries after 1, 2 and 4 more days
    invoice, _february = await invoices(http, purchase_id)  # the used part of February: the test below
    assert invoice["status"] == "UNPAID" and invoice["failedAttempts"] == 4
    assert (await purchase(http, purchase_id))["status"] == "CANCELLED"
    async with http.get("/customers/c-1/notifications", headers=as_("k-c1")) as r:
        templates = [n["template"] for n in (await r.json())["notifications"]]
    assert templates.count("SUBSCRIPTION_PAYMENT_FAILED_WILL_RETRY") == 3 and "SUBSCRIPTION_CANCELLED" in templates
    await stack.advance("30d")
    assert len(await invoices(http, purchase_id)) == 2  # nothing billed after the cancellation


async def test_a_subscription_cancelled_for_non_payment_sends_the_used_part_of_the_month_to_collection(world):
    stack, http, iot, _ = world
    purchase_id = await subscribe(stack, http, iot)  # 5 January
    decline_subscriptions(stack)
    await stack.advance("27d")  # January's invoice declined on 1 February...
    await stack.advance("8d")  # ...and on the 2nd, 4th and 8th: cancelled on 8 February
    january, february = await invoices(http, purchase_id)
    assert january["status"] == "UNPAID" and january["failedAttempts"] == 4
    # 1-8 February, the feature still on: billed as a customer's cancellation is, never charged
    assert february["periodStart"].startswith("2026-02-01T00:00:00") and february["periodEnd"].startswith("2026-02-08")
    assert february["status"] == "UNPAID" and february["failedAttempts"] == 0
    assert february["amount"]["value"] == round(MONTHLY * 7 / 28)
    core = stack.running["core"].app[CORE_KEY]
    async with core.db.transaction(readonly=True) as conn:
        cases = (await conn.execute(select(collection_cases).order_by(collection_cases.c.created_at,
                                                                      collection_cases.c.amount_minor.desc())))
        cases = cases.mappings().all()
    assert [(c["payment_id"], c["amount_minor"]) for c in cases] == [
        (january["invoiceId"], january["amount"]["value"]), (february["invoiceId"], february["amount"]["value"])]
    charged = [e for e in stack.journal() if e.get("service") == "payments" and e.get("path") == "/payments/initiate"]
    assert len(charged) == 4  # January's four attempts; February's part was never charged


@pytest.mark.parametrize("days", [3, 40])
async def test_cancelling_charges_the_partial_month_unless_within_the_withdrawal_window(world, days):
    stack, http, iot, _ = world
    purchase_id = await subscribe(stack, http, iot)
    await stack.advance(f"{days}d")
    cancelled_at = isoformat(stack.clock.now())
    async with http.post(f"/purchases/{purchase_id}/withdrawal", headers=as_("k-c1")) as r:
        assert r.status == 200, await r.text()
        cancelled = await r.json()
    await stack.advance("60d")
    billed = await invoices(http, purchase_id)
    if days == 3:  # within 14 days: a withdrawal, nothing billed
        assert cancelled["status"] == "WITHDRAWN" and billed == []
        return
    assert cancelled["status"] == "CANCELLED"
    _january, february = billed  # cancelled on 14 February: 13 days 8 hours of 28, billed at once
    assert february["periodStart"].startswith("2026-02-01T00:00:00") and february["status"] == "PAID"
    assert february["periodEnd"] == cancelled_at  # the final invoice ends at the cancellation
    assert february["amount"]["value"] == round(MONTHLY * (13 * 24 + 8) / (28 * 24))

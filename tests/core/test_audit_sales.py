"""The audit's invariants over vehicle sales and subscription invoices (issue 6): order
statuses never regress, one factory order per paid reservation, every failed settlement
pursued once, money adds up per customer. A consistent store passes; each breach made on
purpose is named with its entities. On SQLite and on PostgreSQL (the ``db`` fixture)."""

from caas_core.flows import audit
from caas_core.flows.sale_records import STATUS_CHANGED
from caas_core.store import jobs
from caas_core.store.schema import (
    collection_cases,
    invoices,
    notifications,
    payments,
    purchases,
    refunds,
    sale_events,
    sales,
)
from caas_core.store.schema import jobs as jobs_table
from tests.core.test_audit import NOW, by_invariant

PRICE, RESERVATION = 1000, 100
JOURNEY = ["ORDER_QUEUED", "ORDER_PLACED", "PRODUCTION_SCHEDULED", "PRODUCTION_IN_PROGRESS", "QUALITY_CONTROL",
           "PRODUCTION_IN_PROGRESS", "QUALITY_CONTROL", "READY_FOR_SHIPMENT", "IN_TRANSIT", "AWAITING_FINAL_PAYMENT",
           "REGISTRATION", "READY_FOR_DELIVERY", "DELIVERY_SCHEDULED", "AWAITING_COLLECTION", "DELIVERED"]


async def add_sale(conn, sid, statuses, *, customer="c-1", order="auto", paid=("RESERVATION",), pay_status="SETTLED",
                   refunded=(), status=None):
    """A sale that went through ``statuses`` (its file records each), with ``paid`` payments."""
    order_id = f"ord-{sid}" if order == "auto" and "ORDER_PLACED" in statuses else (None if order == "auto" else order)
    await conn.execute(sales.insert().values(
        id=sid, dealership_id="d-1", customer_id=customer, plan={}, country="ES", model="M", price_minor=PRICE,
        currency="EUR", reservation_minor=RESERVATION, status=status or statuses[-1], order_id=order_id,
        created_at=NOW, updated_at=NOW))
    for at, status_ in enumerate(statuses):
        await event(conn, sid, STATUS_CHANGED, {"status": status_}, at)
        if status_ == "ORDER_PLACED":
            await event(conn, sid, "ORDER_PLACED", {"orderId": order_id}, at)
    for kind in paid:
        amount = RESERVATION if kind == "RESERVATION" else PRICE - RESERVATION
        await conn.execute(payments.insert().values(
            id=f"pay-{sid}-{kind}", sale_id=sid, gateway_payment_id=f"gw-{sid}-{kind}", kind=kind,
            amount_minor=amount, currency="EUR", status=pay_status, created_at=NOW))
        if kind in refunded:
            await conn.execute(refunds.insert().values(id=f"ref-{sid}-{kind}", payment_id=f"pay-{sid}-{kind}",
                                                       amount_minor=amount, currency="EUR", status="SUCCEEDED",
                                                       reason="ORDER_REJECTED", created_at=NOW))


async def event(conn, sid, kind, detail, at=0):
    await conn.execute(sale_events.insert().values(sale_id=sid, at=NOW + at, kind=kind, detail=detail))


async def notice(conn, sid, sequence, outcome):
    await event(conn, sid, "FACTORY_NOTIFICATION", {"sequence": sequence, "notification": "STATUS_CHANGED",
                                                    "status": "PRODUCTION_SCHEDULED", "outcome": outcome})


async def collection_case(conn, cid, payment_id, customer, reason="INSUFFICIENT_FUNDS"):
    await conn.execute(collection_cases.insert().values(id=cid, payment_id=payment_id, customer_id=customer,
                                                        amount_minor=RESERVATION, currency="EUR", reason=reason,
                                                        status="open", created_at=NOW))


async def add_subscription(conn, pid, customer, bills):
    """An active subscription with its month-end invoices: (status, paid?) per month."""
    await conn.execute(purchases.insert().values(
        id=pid, customer_id=customer, vin="VIN" + pid[-4:], service_id="heated-seats", duration_type="SUBSCRIPTION",
        price_minor=300, currency="EUR", status="ACTIVE", created_at=NOW, updated_at=NOW, delivered_at=NOW))
    await conn.execute(notifications.insert().values(id=f"n-{pid}", customer_id=customer, channel="email",
                                                     template="SERVICE_ACTIVATED", payload={"purchaseId": pid},
                                                     created_at=NOW))
    for month, (status, pay) in enumerate(bills):
        invoice_id, payment_id = f"inv-{pid}-{month}", f"pay-{pid}-{month}" if pay else None
        await conn.execute(invoices.insert().values(
            id=invoice_id, purchase_id=pid, period_start=NOW + month, period_end=NOW + month + 1, amount_minor=300,
            currency="EUR", status=status, payment_id=payment_id, created_at=NOW, updated_at=NOW))
        if pay:
            await conn.execute(payments.insert().values(
                id=payment_id, purchase_id=pid, gateway_payment_id=f"gw-{payment_id}", kind="SUBSCRIPTION",
                amount_minor=300, currency="EUR", status="SETTLED", created_at=NOW))


async def test_consistent_sales_and_invoices_pass(db):
    async with db.transaction() as conn:
        # the whole journey, QC rework and a missed home delivery included
        await add_sale(conn, "s-dlvd", JOURNEY, paid=("RESERVATION", "FINAL"))
        for sequence, outcome in ((1, "applied"), (3, "applied"), (2, "stale"), (3, "duplicate"),
                                  (4, "no regression from IN_TRANSIT to QUALITY_CONTROL")):
            await notice(conn, "s-dlvd", sequence, outcome)
        # final payment declined: the customer keeps nothing back, the reservation is lost
        await add_sale(conn, "s-back", JOURNEY[:10] + ["RETURNED_TO_STOCK"])
        # order rejected: the reservation refunded
        await add_sale(conn, "s-rjct", ["ORDER_QUEUED", "ORDER_REJECTED"], customer="c-2", refunded=("RESERVATION",))
        # factory down: queued, and its placement job waits for the next attempt
        await add_sale(conn, "s-qued", ["ORDER_QUEUED"], customer="c-2")
        await jobs.enqueue(conn, "factory.place_order", {"saleId": "s-qued"}, run_at=NOW + 60, now=NOW,
                           dedupe_key="factory.place_order:s-qued")
        # registration could not be resolved: cancelled, everything refunded
        await add_sale(conn, "s-cncl", JOURNEY[:11] + ["CANCELLED"], customer="c-2", paid=("RESERVATION", "FINAL"),
                       refunded=("RESERVATION", "FINAL"))
        # a reservation whose settlement failed: brought no money, pursued by one case
        await add_sale(conn, "s-fail", JOURNEY[:3], customer="c-3", pay_status="FAILED")
        await collection_case(conn, "col-1", "pay-s-fail-RESERVATION", "c-3")
        await collection_case(conn, "col-2", "pay-s-fail-RESERVATION", "c-3", reason="CHARGEBACK_FRAUDULENT")
        # an order rejected whose reservation then failed to settle (and so could not be refunded):
        # nothing delivered, nothing owed
        await add_sale(conn, "s-void", ["ORDER_QUEUED", "ORDER_REJECTED"], customer="c-3", pay_status="FAILED")
        await conn.execute(refunds.insert().values(id="ref-void", payment_id="pay-s-void-RESERVATION",
                                                   amount_minor=RESERVATION, currency="EUR", status="FAILED",
                                                   reason="ORDER_REJECTED", created_at=NOW))
        # a subscription: one month paid, one unpaid after every retry and pursued, one being charged
        await add_subscription(conn, "pur-subs", "c-4", [("PAID", True), ("UNPAID", False), ("OPEN", False)])
        await collection_case(conn, "col-3", "inv-pur-subs-1", "c-4")
    report = await audit.run(db, NOW)
    assert report["violations"] == []
    assert {"order_statuses_never_regress", "one_factory_order_per_sale"} <= set(report["invariants"])


async def test_a_sale_status_going_back_is_a_regression(db):
    async with db.transaction() as conn:
        await add_sale(conn, "s-back", ["ORDER_QUEUED", "ORDER_PLACED", "IN_TRANSIT", "PRODUCTION_IN_PROGRESS"])
        await add_sale(conn, "s-after", ["ORDER_QUEUED", "ORDER_REJECTED", "ORDER_PLACED"], customer="c-2",
                       refunded=("RESERVATION",), order=None)
        # the row says DELIVERED, the file's last status says otherwise (a change made behind the file)
        await add_sale(conn, "s-hide", JOURNEY[:10], customer="c-3", status="DELIVERED", paid=("RESERVATION", "FINAL"))
        # a notification applied though not newer, and one refused though newer
        await add_sale(conn, "s-seq", JOURNEY[:3], customer="c-4")
        for sequence, outcome in ((2, "applied"), (2, "applied"), (5, "stale")):
            await notice(conn, "s-seq", sequence, outcome)
    found = by_invariant(await audit.run(db, NOW))
    regressions = found["order_statuses_never_regress"]
    assert sorted(v["saleId"] for v in regressions) == ["s-after", "s-back", "s-hide", "s-seq", "s-seq"]


async def test_a_paid_reservation_has_exactly_one_factory_order(db):
    async with db.transaction() as conn:
        # queued after a factory outage, and the retry job is gone: the order would never be placed
        await add_sale(conn, "s-lost", ["ORDER_QUEUED"])
        # queued, and the retry job failed for good
        await add_sale(conn, "s-dead", ["ORDER_QUEUED"], customer="c-2")
        dead = await jobs.enqueue(conn, "factory.place_order", {"saleId": "s-dead"}, run_at=NOW, now=NOW,
                                  dedupe_key="factory.place_order:s-dead")
        await conn.execute(jobs_table.update().where(jobs_table.c.id == dead).values(status="failed"))
        # a retried placement that made a second order
        await add_sale(conn, "s-twice", JOURNEY[:3], customer="c-3")
        await event(conn, "s-twice", "ORDER_PLACED", {"orderId": "ord-other"})
        # in production with no order; an order with no reservation paid
        await add_sale(conn, "s-noord", JOURNEY[:4], customer="c-4", order=None)
        await add_sale(conn, "s-unpaid", JOURNEY[:2], customer="c-5", paid=())
    found = by_invariant(await audit.run(db, NOW))
    assert sorted(v["saleId"] for v in found["one_factory_order_per_sale"]) == [
        "s-dead", "s-lost", "s-noord", "s-twice", "s-unpaid"]
    assert {"jobId": dead} in found["no_abandoned_jobs"]


async def test_every_failed_settlement_of_a_sale_or_invoice_is_pursued_once(db):
    async with db.transaction() as conn:
        await add_sale(conn, "s-none", JOURNEY[:3], pay_status="FAILED")  # no case
        await add_sale(conn, "s-two", JOURNEY[:3], customer="c-2", pay_status="FAILED")  # two cases
        for cid in ("col-a", "col-b"):
            await collection_case(conn, cid, "pay-s-two-RESERVATION", "c-2")
        await add_subscription(conn, "pur-subs", "c-3", [("UNPAID", False)])  # exhausted retries, no case
    found = by_invariant(await audit.run(db, NOW))
    assert sorted(found["failed_settlement_has_collection_case"], key=str) == sorted([
        {"paymentId": "pay-s-none-RESERVATION", "saleId": "s-none"},
        {"paymentId": "pay-s-two-RESERVATION", "saleId": "s-two"},
        {"invoiceId": "inv-pur-subs-0", "purchaseId": "pur-subs"}], key=str)


async def test_money_adds_up_over_sales_refunds_and_invoices(db):
    async with db.transaction() as conn:
        await add_sale(conn, "s-short", JOURNEY, customer="c-1")  # delivered with only the reservation paid
        await add_sale(conn, "s-kept", ["ORDER_QUEUED", "ORDER_REJECTED"], customer="c-2")  # rejected, not refunded
        # back to stock, yet the lost reservation was refunded
        await add_sale(conn, "s-gift", JOURNEY[:10] + ["RETURNED_TO_STOCK"], customer="c-3",
                       refunded=("RESERVATION",))
        await add_subscription(conn, "pur-dbl", "c-4", [("OPEN", True)])  # charged for an invoice not paid
        await add_sale(conn, "s-ok", JOURNEY, customer="c-5", paid=("RESERVATION", "FINAL"))  # in order
    found = by_invariant(await audit.run(db, NOW))
    assert sorted(v["customerId"] for v in found["money_adds_up_per_customer"]) == ["c-1", "c-2", "c-3", "c-4"]
    assert set(found) == {"money_adds_up_per_customer"}

"""The payment gateway's webhooks as the core processes them: a refund outcome that arrives
before its refund is recorded waits for it; chargebacks and failed settlements of sale
payments open collection cases."""

from sqlalchemy import select, update

from caas_core.api.app import CORE_KEY
from caas_core.flows import webhooks
from caas_core.store.schema import (
    collection_cases,
    payments,
    purchases,
    refunds,
    webhook_inbox,
)
from caas_core.store.schema import jobs as jobs_table
from tests.core import test_service_path as service_path
from tests.core.test_service_path import buy, purchase

world = service_path.world  # database_url: tests/core/conftest.py


async def payment_of(core, purchase_id: str):
    async with core.db.transaction(readonly=True) as conn:
        return (await conn.execute(select(payments).where(payments.c.purchase_id == purchase_id))).mappings().one()


async def test_a_refund_outcome_before_its_refund_is_recorded_waits_for_it(world):
    stack, http, iot, _ = world
    _, bought = await buy(http, iot["healthy"])
    await stack.advance("1m")
    core = stack.running["core"].app[CORE_KEY]
    payment = await payment_of(core, bought["purchaseId"])
    # the gateway refunded (a withdrawal) and called back before the core's transaction committed
    body = {"event": "refundStatus", "refundId": "re_crash_1", "paymentId": payment["gateway_payment_id"],
            "status": "SUCCEEDED"}
    await webhooks.receive(core, "payments", "msg_refund_1", body, None)
    await stack.advance("1h")
    async with core.db.transaction(readonly=True) as conn:
        processed = await conn.scalar(select(webhook_inbox.c.processed_at).where(
            webhook_inbox.c.webhook_id == "msg_refund_1"))
    assert processed is None  # waiting, not failed
    async with core.db.transaction() as conn:  # the withdrawal's transaction finally commits
        await conn.execute(refunds.insert().values(
            id="re_crash_1", payment_id=payment["id"], amount_minor=payment["amount_minor"],
            currency=payment["currency"], status="PENDING", reason="WITHDRAWAL", created_at=core.clock.now()))
        await conn.execute(update(purchases).where(purchases.c.id == bought["purchaseId"]).values(
            status="WITHDRAWN"))
    await stack.advance("10m")
    async with core.db.transaction(readonly=True) as conn:
        status = await conn.scalar(select(refunds.c.status).where(refunds.c.id == "re_crash_1"))
        outcome = await conn.scalar(select(webhook_inbox.c.outcome).where(
            webhook_inbox.c.webhook_id == "msg_refund_1"))
    assert (status, outcome) == ("SUCCEEDED", "refund SUCCEEDED")
    assert (await purchase(http, bought["purchaseId"]))["status"] == "WITHDRAWN"


async def test_a_chargeback_after_delivery_opens_a_collection_case(world):
    stack, http, iot, _ = world
    stack.service("payments").faults.add({"id": "dispute", "action": {"type": "chargeback", "params": {"seconds": 60}}})
    _, bought = await buy(http, iot["healthy"])
    await stack.advance("10d")  # delivered, settled, disputed
    core = stack.running["core"].app[CORE_KEY]
    async with core.db.transaction(readonly=True) as conn:
        cases = (await conn.execute(select(collection_cases))).mappings().all()
    assert [(c["customer_id"], c["amount_minor"], c["reason"][:10]) for c in cases] == \
        [("c-1", bought["price"]["value"], "CHARGEBACK")]
    assert (await purchase(http, bought["purchaseId"]))["status"] == "ACTIVE"  # no retroactive blocking


def settlement(payment_id, sequence, status, reason=None, value=29_900):
    return {"event": "paymentSettlement", "sequence": sequence, "paymentId": payment_id, "status": status,
            "settlementAmount": {"value": value if status == "SETTLED" else 0, "currency": "EUR"},
            "settlementDate": "2026-01-07T08:00:00.000Z", "failureReason": reason,
            "metadata": {"fees": {"value": 0, "currency": "EUR"}}}


async def test_a_settlement_overtaken_by_its_reversal_changes_nothing(world):
    stack, http, iot, _ = world
    _, bought = await buy(http, iot["healthy"])
    await stack.advance("1m")
    core = stack.running["core"].app[CORE_KEY]
    payment = await payment_of(core, bought["purchaseId"])
    gateway_id = payment["gateway_payment_id"]
    # the bank's reversal (sequence 3) arrives before the settlement it reverses (sequence 2)
    await webhooks.receive(core, "payments", "msg_rev", settlement(gateway_id, 3, "FAILED", "BANK_REVERSAL"), None)
    await stack.advance("1s")  # processed before the settlement it overtook arrives
    await webhooks.receive(core, "payments", "msg_set", settlement(gateway_id, 2, "SETTLED"), None)
    await stack.advance("1m")
    async with core.db.transaction(readonly=True) as conn:
        status = await conn.scalar(select(payments.c.status).where(payments.c.id == payment["id"]))
        cases = (await conn.execute(select(collection_cases))).mappings().all()
        outcome = await conn.scalar(select(webhook_inbox.c.outcome).where(webhook_inbox.c.webhook_id == "msg_set"))
    assert status == "FAILED" and "not after 3" in outcome, outcome
    assert [(c["amount_minor"], c["status"], c["reason"]) for c in cases] == [
        (bought["price"]["value"], "open", "BANK_REVERSAL: BANK_REVERSAL")]


async def test_a_settlement_failing_while_the_activation_is_retried_is_collected_once_delivered(world):
    stack, http, iot, _ = world
    _, bought = await buy(http, iot["flaky_twice"])  # delivered on the third attempt, minutes later
    core = stack.running["core"].app[CORE_KEY]
    payment = await payment_of(core, bought["purchaseId"])
    await webhooks.receive(core, "payments", "msg_fail",
                           settlement(payment["gateway_payment_id"], 2, "FAILED", "INSUFFICIENT_FUNDS"), None)
    await stack.advance("1s")
    async with core.db.transaction(readonly=True) as conn:
        held = await conn.scalar(select(collection_cases.c.status))
    assert held == "on_hold"  # not delivered yet: nothing to pursue
    await stack.advance("30m")
    assert (await purchase(http, bought["purchaseId"]))["status"] == "ACTIVE"
    async with core.db.transaction(readonly=True) as conn:
        assert await conn.scalar(select(collection_cases.c.status)) == "open"


async def test_a_signed_but_malformed_settlement_is_recorded_not_retried_forever(world):
    stack, http, iot, _ = world
    _, bought = await buy(http, iot["healthy"])
    core = stack.running["core"].app[CORE_KEY]
    async with core.db.transaction(readonly=True) as conn:
        gateway_id = await conn.scalar(select(payments.c.gateway_payment_id).where(
            payments.c.purchase_id == bought["purchaseId"]))
    await webhooks.receive(core, "payments", "msg_bad", {"event": "paymentSettlement", "paymentId": gateway_id,
                                                         "status": "FAILED"}, None)
    await stack.advance("1m")
    async with core.db.transaction(readonly=True) as conn:
        outcome = await conn.scalar(select(webhook_inbox.c.outcome).where(webhook_inbox.c.webhook_id == "msg_bad"))
    assert outcome.startswith("malformed paymentSettlement: sequence: Field required"), outcome
    async with core.db.transaction(readonly=True) as conn:  # recorded as it arrived, with no job to process it
        assert await conn.scalar(select(jobs_table.c.id).where(jobs_table.c.dedupe_key == "webhook:payments:msg_bad")) \
            is None


async def test_a_given_up_purchase_whose_payment_never_settled_ends_refunded_of_nothing(world):
    """Found by the crash test on PostgreSQL: the OTA gave up and its refund was asked for, then
    the payment failed to settle (no money came in). The refund has nothing to give back, and
    the purchase must not wait for it for ever."""
    stack, http, iot, _ = world
    _, bought = await buy(http, iot["always_offline"])
    await stack.advance("2h")  # given up, refund asked for (pending: refunds are paid out of settled funds)
    core = stack.running["core"].app[CORE_KEY]
    payment = await payment_of(core, bought["purchaseId"])
    assert (await purchase(http, bought["purchaseId"]))["status"] == "ACTIVATION_FAILED"
    await webhooks.receive(core, "payments", "msg_nofunds",
                           settlement(payment["gateway_payment_id"], 99, "FAILED", "INSUFFICIENT_FUNDS"), None)
    await stack.advance("1s")
    async with core.db.transaction(readonly=True) as conn:
        assert [r["status"] for r in (await conn.execute(select(refunds))).mappings()] == ["VOID"]
    assert (await purchase(http, bought["purchaseId"]))["status"] == "REFUNDED"

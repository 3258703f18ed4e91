"""The payment gateway's webhooks as the core processes them: a refund outcome that arrives
before its refund is recorded waits for it; chargebacks and failed settlements of sale
payments open collection cases."""

from sqlalchemy import select, update

from caas_core.api.app import CORE_KEY
from caas_core.flows import webhooks
from caas_core.store.schema import collection_cases, payments, purchases, refunds, webhook_inbox
from tests.core import test_service_path as service_path
from tests.core.test_service_path import buy, purchase

database_url, world = service_path.database_url, service_path.world


async def test_a_refund_outcome_before_its_refund_is_recorded_waits_for_it(world):
    stack, http, iot, _ = world
    _, bought = await buy(http, iot["healthy"])
    await stack.advance("1m")
    core = stack.running["core"].app[CORE_KEY]
    async with core.db.transaction(readonly=True) as conn:
        payment = (await conn.execute(select(payments).where(payments.c.purchase_id == bought["purchaseId"]))
                   ).mappings().one()
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

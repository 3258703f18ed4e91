"""A bank reversal (paymentSettlement FAILED) only ever follows the settlement: when the
SETTLED webhook arrives after it (reordered or delayed delivery), the payment stays FAILED
with its one collection case, as when both arrive in order (found by tests/chaos)."""

from sqlalchemy import func, select

from caas_core.api.app import CORE_KEY
from caas_core.flows import webhooks
from caas_core.store.schema import collection_cases, payments, webhook_inbox
from tests.core import test_service_path as service_path
from tests.core.test_service_path import buy

database_url, world = service_path.database_url, service_path.world


async def test_a_settlement_arriving_after_its_reversal_changes_nothing(world):
    stack, http, iot, _ = world
    _, bought = await buy(http, iot["healthy"])
    await stack.advance("1m")
    core = stack.running["core"].app[CORE_KEY]
    async with core.db.transaction(readonly=True) as conn:
        payment = (await conn.execute(select(payments).where(payments.c.purchase_id == bought["purchaseId"]))
                   ).mappings().one()
    gateway_id = payment["gateway_payment_id"]
    await webhooks.receive(core, "payments", "msg_late_2", {"event": "paymentSettlement", "paymentId": gateway_id,
                                                           "status": "FAILED", "failureReason": "BANK_REVERSAL"}, None)
    await stack.advance("1m")
    await webhooks.receive(core, "payments", "msg_late_1", {"event": "paymentSettlement", "paymentId": gateway_id,
                                                           "status": "SETTLED"}, None)
    await stack.advance("1m")
    async with core.db.transaction(readonly=True) as conn:
        status = await conn.scalar(select(payments.c.status).where(payments.c.id == payment["id"]))
        cases = await conn.scalar(select(func.count()).select_from(collection_cases)
                                  .where(collection_cases.c.payment_id == payment["id"]))
        outcome = await conn.scalar(select(webhook_inbox.c.outcome).where(webhook_inbox.c.webhook_id == "msg_late_1"))
    assert (status, cases) == ("FAILED", 1)
    assert "stale" in outcome
    async with http.get("/__admin/audit") as r:
        assert (await r.json())["violations"] == []

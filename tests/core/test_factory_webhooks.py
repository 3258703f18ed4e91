"""The factory's signed notifications against a sale, end to end (issue 22): a notification
with a newer sequence but an earlier status never moves a sale back."""

import time
from datetime import UTC, datetime

import orjson
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from caas_core.api.app import CORE_KEY
from caas_core.settings import DEVELOPMENT_SECRET
from caas_core.store.schema import webhook_inbox
from caas_sim.scenarios.stack import CORE_WEBHOOK_PATHS
from tests.core.test_sale_journey import until, world  # noqa: F401  (world: the fixture)


def signed(webhook_id: str, body: bytes) -> dict:
    sent = int(time.time())  # signatures use wall time: transport security, not domain time
    return {"webhook-id": webhook_id, "webhook-timestamp": str(sent), "content-type": "application/json",
            "webhook-signature": Webhook(DEVELOPMENT_SECRET).sign(webhook_id, datetime.fromtimestamp(sent, tz=UTC),
                                                                  body.decode())}


async def factory_notifications(stack, order_id):
    """The factory's orderStatus webhooks of an order as the core's inbox holds them, by sequence."""
    async with stack.running["core"].app[CORE_KEY].db.transaction(readonly=True) as conn:
        rows = (await conn.execute(select(webhook_inbox.c.webhook_id, webhook_inbox.c.payload, webhook_inbox.c.outcome)
                                   .where(webhook_inbox.c.source == "factory"))).all()
    found = []
    for webhook_id, payload, outcome in rows:
        body = orjson.loads(payload) if isinstance(payload, str | bytes) else payload
        if body.get("orderId") == order_id and body.get("eventType") == "ORDER_STATUS":
            found.append((webhook_id, body, outcome))
    return sorted(found, key=lambda found: found[1]["sequence"])


async def test_a_newer_sequence_with_an_earlier_status_never_moves_an_in_transit_sale_back(world):  # noqa: F811
    stack, api = world
    sale_id = await api.sell()
    status, sale = await api.reserve(sale_id)
    assert status == 200 and sale["status"] == "ORDER_PLACED", sale
    sale = await until(stack, api, sale_id, "IN_TRANSIT")
    received = await factory_notifications(stack, sale["orderId"])
    _, last, _ = received[-1]
    assert last["status"] == "IN_TRANSIT" and all(outcome for _, _, outcome in received)  # all processed
    told_before = await api.templates()

    # The factory (misbehaving, or a replay of an old state under a new number) says QUALITY_CONTROL
    # with the next sequence: newer than anything applied, earlier in the flow.
    regression = {**last, "sequence": last["sequence"] + 1, "notification": "STATUS_CHANGED",
                  "status": "QUALITY_CONTROL", "previousStatus": "IN_TRANSIT", "milestone": None, "tracking": None,
                  "estimateRevision": None, "description": "Quality control", "timestamp": last["timestamp"]}
    body = orjson.dumps(regression)
    async with api.http.post(CORE_WEBHOOK_PATHS["factory"], data=body, headers=signed("msg_regression", body)) as r:
        assert r.status == 204, await r.text()
    await stack.advance("1s")  # the notification's processing job runs

    assert (await api.sale(sale_id))["status"] == "IN_TRANSIT"
    [(_, _, outcome)] = [n for n in await factory_notifications(stack, sale["orderId"]) if n[0] == "msg_regression"]
    assert outcome == "no regression from IN_TRANSIT to QUALITY_CONTROL"
    [entry] = [e["detail"] for e in (await api.file(sale_id))["history"] if e["event"] == "FACTORY_NOTIFICATION"
               and e["detail"]["sequence"] == regression["sequence"] and e["detail"]["status"] == "QUALITY_CONTROL"]
    assert entry["outcome"] == "no regression from IN_TRANSIT to QUALITY_CONTROL"  # recorded in the file, ignored
    assert await api.templates() == told_before  # and the customer was told nothing

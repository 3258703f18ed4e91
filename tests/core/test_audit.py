"""The invariant audit (caas_core.flows.audit): each invariant catches its own breach and
names the entities, on SQLite and on PostgreSQL; a clean store passes."""

import json

import pytest

from caas_core.flows import audit
from caas_core.store import inbox, jobs
from caas_core.store.schema import (
    collection_cases,
    notifications,
    payments,
    purchases,
    refunds,
    sales,
)
from caas_core.store.schema import jobs as jobs_table

NOW = 1_767_600_000.0


async def add_purchase(conn, pid, *, status="ACTIVE", delivered=True, customer="c-1", price=500,
                       pay_status="SETTLED", refunded=None, refund_status="SUCCEEDED", announce=None):
    await conn.execute(purchases.insert().values(
        id=pid, customer_id=customer, vin="VIN" + pid[-4:], service_id="heated-seats", duration_type="PERMANENT",
        price_minor=price, currency="EUR", status=status, payment_id=f"pay-{pid}", created_at=NOW, updated_at=NOW,
        delivered_at=NOW if delivered else None, refunded_minor=refunded or 0))
    await conn.execute(payments.insert().values(
        id=f"pay-{pid}", purchase_id=pid, gateway_payment_id=f"gw-{pid}", kind="SERVICE", amount_minor=price,
        currency="EUR", status=pay_status, created_at=NOW))
    if refunded:
        await conn.execute(refunds.insert().values(id=f"ref-{pid}", payment_id=f"pay-{pid}", amount_minor=refunded,
                                                   currency="EUR", status=refund_status, reason="X", created_at=NOW))
    for channel in ("email", "push", "in_vehicle")[: (1 if delivered else 0) if announce is None else announce]:
        await conn.execute(notifications.insert().values(
            id=f"n-{pid}-{channel}", customer_id=customer, channel=channel, template="SERVICE_ACTIVATED",
            payload={"purchaseId": pid}, created_at=NOW))


def by_invariant(report) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for v in report["violations"]:
        found.setdefault(v["invariant"], []).append(v["entities"])
    return found


async def test_a_clean_store_passes(db):
    async with db.transaction() as conn:
        await add_purchase(conn, "pur-ok01")
        await add_purchase(conn, "pur-ok02", status="REFUNDED", delivered=False, refunded=500)
        await add_purchase(conn, "pur-ok03", status="ACTIVE", pay_status="FAILED")
        await conn.execute(collection_cases.insert().values(id="col-1", payment_id="pay-pur-ok03", customer_id="c-1",
                                                            amount_minor=500, currency="EUR", reason="X",
                                                            status="open", created_at=NOW))
        await inbox.accept_many(conn, [inbox.Arrival("iot", "msg-1", json.dumps({}))], NOW)
        await inbox.mark_processed(conn, "iot", "msg-1", "processed", NOW)
    report = await audit.run(db, NOW)
    assert report["violations"] == []
    assert report["ok"] and report["settled"]
    assert report["checked"] == {"purchases": 3, "payments": 3, "webhooks": 1, "scheduledJobs": 0}


async def test_each_invariant_names_what_breaks_it(db):
    async with db.transaction() as conn:
        # a webhook accepted, never processed, no job to process it: lost
        await inbox.accept_many(conn, [inbox.Arrival("payments", "msg-lost", json.dumps({}))], NOW)
        # a webhook whose job gave up for good
        await inbox.accept_many(conn, [inbox.Arrival("iot", "msg-dead", json.dumps({}))], NOW)
        dead = await jobs.enqueue(conn, "ota.outcome", {"webhookId": "msg-dead"}, run_at=NOW, now=NOW,
                                  dedupe_key="webhook:iot:msg-dead")
        await conn.execute(jobs_table.update().where(jobs_table.c.id == dead).values(status="failed"))
        await add_purchase(conn, "pur-nodl", status="ACTIVE", delivered=False, announce=0)
        await add_purchase(conn, "pur-twic", announce=2)
        await conn.execute(notifications.insert().values(
            id="n-extra", customer_id="c-1", channel="email", template="SERVICE_ACTIVATED",
            payload={"purchaseId": "pur-twic"}, created_at=NOW))
        await add_purchase(conn, "pur-kept", status="REFUNDED", delivered=False, refunded=500, refund_status="FAILED",
                           customer="c-2")
        await add_purchase(conn, "pur-over", status="REFUNDED", delivered=False, refunded=900, customer="c-3")
        await add_purchase(conn, "pur-coll", pay_status="FAILED", customer="c-4")
        for sale in ("sale-1", "sale-2"):  # one factory order for two sales
            await conn.execute(sales.insert().values(
                id=sale, dealership_id="d-1", customer_id="c-5", plan={}, country="ES", model="M", price_minor=1,
                currency="EUR", reservation_minor=1, status="ORDERED", order_id="ord-1", created_at=NOW,
                updated_at=NOW))
    found = by_invariant(await audit.run(db, NOW))
    assert {"source": "payments", "webhookId": "msg-lost"} in found["webhooks_processed_once"]
    assert {"source": "iot", "webhookId": "msg-dead", "jobId": dead} in found["webhooks_processed_once"]
    assert {"jobId": dead} in found["no_abandoned_jobs"]
    assert found["delivery_recorded_consistently"] == [{"purchaseId": "pur-nodl"}]
    assert {"purchaseId": "pur-twic"} in found["one_activation_per_delivered_purchase"]
    assert found["no_charge_without_delivery"] == [{"purchaseId": "pur-kept", "paymentId": "pay-pur-kept"}]
    assert found["refunds_within_payment"] == [{"paymentId": "pay-pur-over", "purchaseId": "pur-over"}]
    assert found["failed_settlement_has_collection_case"] == [{"paymentId": "pay-pur-coll", "purchaseId": "pur-coll"}]
    # c-2 kept 500 for nothing; c-3 got 400 more than it paid
    assert {"orderId": "ord-1"} in found["one_factory_order_per_sale"]
    customers = {e["customerId"] for e in found["money_adds_up_per_customer"]}
    assert customers == {"c-2", "c-3"}


async def test_in_flight_work_is_reported_not_judged(db):
    async with db.transaction() as conn:
        await add_purchase(conn, "pur-busy", status="ACTIVATING", delivered=False)
        await jobs.enqueue(conn, "ota.activate", {"purchaseId": "pur-busy"}, run_at=NOW, now=NOW)
        await jobs.enqueue(conn, "service.expire", {"purchaseId": "pur-busy"}, run_at=NOW + 60, now=NOW)
    report = await audit.run(db, NOW)
    assert report["ok"] and not report["settled"]
    assert report["inFlight"] == {"jobs": 1, "webhooks": 0, "purchases": 1}
    assert report["checked"]["scheduledJobs"] == 1  # due later: scheduled, not in flight


@pytest.mark.parametrize("name", list(audit.INVARIANTS))
def test_every_invariant_is_documented(name):
    assert audit.INVARIANTS[name].__doc__


async def test_the_route_and_the_cli_audit_a_running_core(tmp_path):
    """A real journey mix, settled: the route and `caas-sim audit` agree that all holds;
    a breach made behind the core's back turns both red."""
    import asyncio

    import aiohttp

    from caas_core.api.app import CORE_KEY
    from caas_sim.scenarios.cli import main
    from caas_sim.scenarios.stack import Stack
    from caas_sim.simulators.iot.api import MODEL_KEY

    keys = {"k": {"role": "customer", "subject": "c-1"}}
    stack = Stack(services=["iot", "vss", "payments"], seed=0,
                  core={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", "api_keys": keys})
    async with stack, aiohttp.ClientSession(stack.url("core"), headers={"Authorization": "Bearer k"}) as http:
        magic = stack.running["iot"].app[MODEL_KEY].fleet.magic_vins()
        for vin, token in ((magic["healthy"], "pm_card_visa"), (magic["always_offline"], "pm_card_visa"),
                           (magic["flaky_twice"], "pm_card_settlement_fails")):
            async with http.post(f"/customers/c-1/vehicles/{vin}/purchases", json={
                    "serviceId": "heated-seats", "durationType": "PERMANENT",
                    "paymentMethod": {"type": "CARD", "token": token}}) as r:
                assert r.status == 201, await r.text()
        await stack.advance("3d")
        async with http.get("/__admin/audit") as r:
            assert r.status == 200
            report = await r.json()
        assert report["violations"] == [] and report["settled"], report
        assert report["checked"]["purchases"] == 3 and report["checked"]["webhooks"] >= 5
        assert await asyncio.to_thread(main, ["audit", "--target", stack.url("core")]) == 0

        async with stack.running["core"].app[CORE_KEY].db.transaction() as conn:
            await conn.execute(payments.update().values(status="FAILED"))  # settlements "failed" unnoticed
        assert await asyncio.to_thread(main, ["audit", "--target", stack.url("core")]) == 1
        async with http.get("/__admin/audit") as r:
            found = by_invariant(await r.json())
        assert len(found["failed_settlement_has_collection_case"]) == 1  # the delivered one without a case

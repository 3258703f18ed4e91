"""The service purchase to OTA activation path, end to end, in virtual time:
the core against the running IoT, VSS and payment simulators."""

import os
from datetime import UTC

import aiohttp
import pytest
from sqlalchemy import select

from caas_core.api.app import CORE_KEY
from caas_core.store.schema import collection_cases
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.iot.api import MODEL_KEY as IOT_MODEL
from caas_sim.simulators.vss.api import MODEL_KEY as VSS_MODEL

POSTGRES_URL = os.environ.get("CAAS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
KEYS = {"k-c1": {"role": "customer", "subject": "c-1"}, "k-c2": {"role": "customer", "subject": "c-2"},
        "k-ops": {"role": "operator", "subject": "ops"}}
CARD = {"type": "CARD", "token": "pm_card_visa"}


@pytest.fixture
async def world(database_url):
    stack = Stack(services=["iot", "vss", "payments"], seed=0, core={"database_url": database_url, "api_keys": KEYS})
    async with stack, aiohttp.ClientSession(stack.url("core")) as http:
        iot_magic = stack.running["iot"].app[IOT_MODEL].fleet.magic_vins()
        vss_magic = stack.running["vss"].app[VSS_MODEL].magic_vins()
        yield stack, http, iot_magic, vss_magic
        assert stack.violations() == []  # the core broke no simulator's contract


def as_(key):
    return {"Authorization": f"Bearer {key}"}


async def buy(http, vin, service="heated-seats", duration="PERMANENT", customer="c-1", key="k-c1"):
    async with http.post(f"/customers/{customer}/vehicles/{vin}/purchases", headers=as_(key),
                         json={"serviceId": service, "durationType": duration, "paymentMethod": CARD}) as r:
        return r.status, await r.json()


async def purchase(http, purchase_id, key="k-c1"):
    async with http.get(f"/purchases/{purchase_id}", headers=as_(key)) as r:
        return await r.json()


async def test_purchase_is_delivered_at_once_and_the_customer_told_on_every_channel(world):
    stack, http, iot, _ = world
    status, bought = await buy(http, iot["healthy"])
    assert status == 201 and bought["status"] == "ACTIVATION_QUEUED" and bought["price"]["currency"] == "EUR"
    await stack.advance("1m")
    done = await purchase(http, bought["purchaseId"])
    assert done["status"] == "ACTIVE" and done["attempts"] == 1 and done["deliveredAt"]
    async with http.get("/customers/c-1/notifications", headers=as_("k-c1")) as r:
        channels = {n["channel"] for n in (await r.json())["notifications"] if n["template"] == "SERVICE_ACTIVATED"}
    assert channels == {"email", "push", "in_vehicle"}


async def test_a_customer_reaches_only_its_own_purchases(world):
    _stack, http, iot, _ = world
    _, bought = await buy(http, iot["healthy"])
    async with http.get(f"/purchases/{bought['purchaseId']}", headers=as_("k-c2")) as r:
        assert r.status == 403
    async with http.get(f"/purchases/{bought['purchaseId']}") as r:
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    status, _ = await buy(http, iot["healthy"], customer="c-1", key="k-c2")
    assert status == 403


async def test_maintenance_below_threshold_blocks_the_purchase(world):
    _stack, http, _, vss = world
    status, problem = await buy(http, vss["several_blocks_low"], service="performance-boost")
    assert status == 422 and problem["title"] == "Maintenance required"
    assert problem["shortfalls"] and all(s["actualPercent"] < s["requiredPercent"] for s in problem["shortfalls"])


async def test_vss_down_allows_the_purchase_and_records_the_risk(world):
    stack, http, _, vss = world
    stack.service("vss").faults.add({"action": {"type": "vss_unavailable"}})
    status, bought = await buy(http, vss["fully_compliant"], service="performance-boost")
    assert status == 201 and bought["riskDecision"] and "MAINTENANCE_UNVERIFIED" in bought["warnings"]


async def test_activation_succeeds_on_the_third_attempt(world):
    stack, http, iot, _ = world
    _, bought = await buy(http, iot["flaky_twice"])
    await stack.advance("30m")
    done = await purchase(http, bought["purchaseId"])
    assert done["status"] == "ACTIVE" and done["attempts"] == 3


async def test_all_attempts_failing_means_ticket_refund_notice_and_no_charge(world):
    stack, http, iot, _ = world
    _, bought = await buy(http, iot["always_offline"])
    await stack.advance("2h")
    failed = await purchase(http, bought["purchaseId"])
    assert failed["status"] == "ACTIVATION_FAILED" and failed["refundPending"] == failed["price"]
    assert failed["refunded"]["value"] == 0  # requested at the gateway, not completed yet
    async with http.get("/support/tickets", headers=as_("k-ops")) as r:
        [ticket] = (await r.json())["tickets"]
    assert ticket["purchaseId"] == bought["purchaseId"] and ticket["diagnostics"]["connectivity"] == "OFFLINE"
    async with http.get("/support/tickets", headers=as_("k-c1")) as r:
        assert r.status == 403
    async with http.get("/customers/c-1/notifications", headers=as_("k-c1")) as r:
        failed_notices = {n["channel"] for n in (await r.json())["notifications"]
                          if n["template"] == "ACTIVATION_FAILED_REFUNDED"}
    assert failed_notices == {"email", "push"}
    await stack.advance("3d")  # the refund is paid out of settled funds, then confirmed by webhook
    assert (await purchase(http, bought["purchaseId"]))["status"] == "REFUNDED"


async def test_a_temporary_service_expires_and_is_deactivated(world):
    stack, http, iot, _ = world
    _, bought = await buy(http, iot["healthy"], duration="TEMPORARY")
    await stack.advance("1m")
    active = await purchase(http, bought["purchaseId"])
    assert active["status"] == "ACTIVE" and active["expiresAt"]
    await stack.advance("40d")
    assert (await purchase(http, bought["purchaseId"]))["status"] == "EXPIRED"
    deactivations = [e for e in stack.service("iot").journal.entries()
                     if e["kind"] == "request" and e.get("operation") == "deactivateService"]
    assert len(deactivations) == 1  # asked once (the vehicle may already have switched it off: 422 is fine)


async def test_refunded_counts_a_refund_once_the_gateway_completes_it(world):
    stack, http, iot, _ = world
    _, bought = await buy(http, iot["healthy"])
    await stack.advance("1d")
    async with http.post(f"/purchases/{bought['purchaseId']}/withdrawal", headers=as_("k-c1")) as r:
        assert r.status == 200
    await stack.advance("1h")  # the refund is requested at the gateway, which completes it days later
    asked = await purchase(http, bought["purchaseId"])
    assert asked["refunded"]["value"] == 0 and asked["refundPending"] == asked["price"]
    await stack.advance("5d")
    done = await purchase(http, bought["purchaseId"])
    assert done["refunded"] == done["price"] and done["refundPending"]["value"] == 0


async def test_withdrawal_inside_14_days_refunds_and_deactivates_after_it_is_refused(world):
    stack, http, iot, _ = world
    _, early = await buy(http, iot["healthy"])
    _, late = await buy(http, iot["healthy"], service="premium-audio")
    await stack.advance("3d")
    async with http.post(f"/purchases/{early['purchaseId']}/withdrawal", headers=as_("k-c1")) as r:
        withdrawn = await r.json()
        assert r.status == 200, withdrawn
    assert withdrawn["status"] == "WITHDRAWN" and withdrawn["refundPending"] == withdrawn["price"]
    assert withdrawn["refunded"]["value"] == 0  # `refunded` counts completed refunds only
    await stack.advance("1m")
    assert any(e.get("operation") == "deactivateService" for e in stack.service("iot").journal.entries())
    await stack.advance("12d")  # 15 days after the second purchase
    async with http.post(f"/purchases/{late['purchaseId']}/withdrawal", headers=as_("k-c1")) as r:
        assert r.status == 422 and (await r.json())["title"] == "Withdrawal period over"
    assert (await purchase(http, late["purchaseId"]))["status"] == "ACTIVE"


async def test_a_failed_settlement_opens_a_collection_case_and_the_service_stays(world):
    stack, http, iot, _ = world
    async with http.post(f"/customers/c-1/vehicles/{iot['healthy']}/purchases", headers=as_("k-c1"),
                         json={"serviceId": "heated-seats", "durationType": "PERMANENT",
                               "paymentMethod": {"type": "CARD", "token": "pm_card_settlement_fails"}}) as r:
        bought = await r.json()
    await stack.advance("3d")
    assert (await purchase(http, bought["purchaseId"]))["status"] == "ACTIVE"
    core_db = stack.running["core"].app[CORE_KEY].db
    async with core_db.transaction(readonly=True) as conn:
        cases = (await conn.execute(select(collection_cases))).mappings().all()
    assert [(c["amount_minor"], c["status"]) for c in cases] == [(bought["price"]["value"], "open")]


async def test_iot_api_down_then_recovering_delays_and_then_delivers(world):
    stack, http, iot, _ = world
    stack.service("iot").faults.add({"id": "down", "match": {"operation": "activateService"},
                                     "action": {"type": "http_error", "params": {"status": 503, "retry_after": 120}},
                                     "window": {"until": "+20m"}})
    _, bought = await buy(http, iot["healthy"])
    await stack.advance("10m")
    waiting = await purchase(http, bought["purchaseId"])
    assert waiting["status"] == "ACTIVATION_QUEUED" and waiting["attempts"] == 0
    async with http.get("/customers/c-1/notifications", headers=as_("k-c1")) as r:
        delayed = [n for n in (await r.json())["notifications"] if n["template"] == "ACTIVATION_DELAYED"]
    assert {n["channel"] for n in delayed} == {"email", "push"}  # told once, on both channels
    await stack.advance("1h")
    assert (await purchase(http, bought["purchaseId"]))["status"] == "ACTIVE"


async def test_a_retried_purchase_with_the_same_key_is_the_same_purchase(world):
    stack, http, iot, _ = world
    body = {"serviceId": "heated-seats", "durationType": "PERMANENT", "paymentMethod": CARD}
    url = f"/customers/c-1/vehicles/{iot['healthy']}/purchases"
    headers = {**as_("k-c1"), "Idempotency-Key": "buy-1"}
    async with http.post(url, json=body, headers=headers) as r:
        first = await r.json()
    async with http.post(url, json=body, headers=headers) as r:
        assert r.status == 201 and r.headers["Idempotent-Replayed"] == "true"
        assert (await r.json())["purchaseId"] == first["purchaseId"]
    async with http.post(url, json={**body, "serviceId": "premium-audio"}, headers=headers) as r:
        assert r.status == 422
    await stack.advance("1m")
    payments = [e for e in stack.service("payments").journal.entries() if e.get("operation") == "initiatePayment"]
    assert len(payments) == 1


async def test_webhook_receivers_verify_signatures_and_dedupe_durably(world):
    import time
    from datetime import datetime

    import orjson
    from standardwebhooks.webhooks import Webhook

    from caas_core.settings import DEVELOPMENT_SECRET

    stack, http, iot, _ = world
    body = orjson.dumps({"requestId": "ota_unknown", "vin": iot["healthy"], "serviceId": "x", "status": "ACTIVATED",
                         "errorCode": None, "timestamp": "2026-01-05T08:00:00.000Z"})

    def signed(at, webhook_id="msg_test"):
        stamp = datetime.fromtimestamp(int(at), tz=UTC)
        return {"webhook-id": webhook_id, "webhook-timestamp": str(int(at)), "content-type": "application/json",
                "webhook-signature": Webhook(DEVELOPMENT_SECRET).sign(webhook_id, stamp, body.decode())}

    async with http.post("/caas/webhooks/ota-status", data=body, headers=signed(time.time())) as r:
        assert r.status == 204
    async with http.post("/caas/webhooks/ota-status", data=body, headers=signed(time.time())) as r:
        assert r.status == 204  # the same webhook-id again: acknowledged, not processed twice
    async with http.post("/caas/webhooks/ota-status", data=body + b" ", headers=signed(time.time())) as r:
        assert r.status == 401  # the body is not what was signed
    async with http.post("/caas/webhooks/ota-status", data=body, headers=signed(time.time() - 600, "m2")) as r:
        assert r.status == 401 and (await r.json())["type"].endswith("webhook-timestamp")
    async with http.post("/caas/webhooks/payments", data=body, headers={"content-type": "application/json"}) as r:
        assert r.status == 401
    await stack.advance("1s")
    core_db = stack.running["core"].app[CORE_KEY].db
    async with core_db.transaction(readonly=True) as conn:
        from caas_core.store.schema import jobs as jobs_table
        from caas_core.store.schema import webhook_inbox

        inbox = (await conn.execute(select(webhook_inbox))).mappings().all()
        outcome_jobs = (await conn.execute(select(jobs_table).where(jobs_table.c.kind == "ota.outcome"))).all()
    assert [(row["webhook_id"]) for row in inbox] == ["msg_test"] and len(outcome_jobs) == 1
    assert inbox[0]["processed_at"] is not None  # handled (here: a request id the core never made)


async def test_an_attempt_that_times_out_on_our_side_but_succeeds_later_counts(world):
    stack, http, iot, _ = world
    _, bought = await buy(http, iot["sleeping"])  # waking it takes longer than our 60 s per attempt
    await stack.advance("30m")
    done = await purchase(http, bought["purchaseId"])
    assert done["status"] == "ACTIVE" and done["refunded"]["value"] == 0
    activations = [r for r in stack.running["iot"].app[IOT_MODEL].requests.values() if r.vin == iot["sleeping"]]
    assert len(activations) >= 2  # we retried meanwhile; the first to get through delivered it

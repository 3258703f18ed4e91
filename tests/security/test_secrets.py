"""Secrets (API keys, webhook secrets, the database password, the admin token) never show in
the core's logs or in any answer, whatever goes wrong. Logs are captured at DEBUG, from
every logger, while hostile and broken requests hit the core."""

import logging
import os
import time
import uuid

import asyncpg
import orjson
import pytest
import requests

from tests.security.live import ADMIN_TOKEN, KEYS, WEBHOOK_SECRET, LiveCore
from tests.security.test_webhook_receivers import OTHER_SECRET, signed

POSTGRES_URL = os.environ.get("CAAS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
DB_PASSWORD = "db-passw0rd-s3cr3t"  # the server trusts local connections: any password works, none may leak


@pytest.fixture
def database_url():
    name = f"caas_{uuid.uuid4().hex[:12]}"
    admin_url = POSTGRES_URL.replace("postgresql+asyncpg", "postgresql")
    import asyncio

    async def admin(sql):
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is required at {POSTGRES_URL} ({exc})", pytrace=False)
    user_host, _, _ = POSTGRES_URL.split("://", 1)[1].partition("/")
    user, _, host = user_host.partition("@")
    yield f"postgresql+asyncpg://{user.split(':')[0]}:{DB_PASSWORD}@{host}/{name}"
    asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


def secrets() -> list[str]:
    found = [*KEYS, ADMIN_TOKEN, DB_PASSWORD, WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_")]
    return [s for s in found if len(s) >= 8]


def test_no_secret_in_logs_or_answers(database_url, caplog):
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    live = LiveCore(services=["iot", "vss", "payments"], seed=0, with_sink=False,
                    core={"database_url": database_url, "api_keys": KEYS, "admin_token": ADMIN_TOKEN,
                          "webhook_secrets": {"*": WEBHOOK_SECRET}})
    with live:
        url = live.url

        def keep(r):
            answers.append(f"{r.status_code} {dict(r.headers)} {r.text}")
            return r

        body = orjson.dumps({"serviceId": "heated-seats", "durationType": "PERMANENT",
                             "paymentMethod": {"type": "CARD", "token": "pm_card_visa"}})
        for key in ("key-cust-1-s3cr3", "key-cust-1-s3cr3tt", "KEY-CUST-1-S3CR3T", ADMIN_TOKEN):  # near misses
            keep(requests.post(f"{url}/customers/c-1/vehicles/1HGCM82633A004352/purchases", data=body,
                               headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}))
        keep(requests.get(f"{url}/purchases/pur_x", headers={"Authorization": "Bearer key-cust-2-s3cr3t"}))
        keep(requests.get(f"{url}/support/tickets", headers={"Authorization": "Bearer key-cust-1-s3cr3t"}))
        keep(requests.post(f"{url}/customers/c-1/vehicles/1HGCM82633A004352/purchases", data=b"{not json",
                           headers={"Authorization": "Bearer key-cust-1-s3cr3t", "Content-Type": "application/json"}))
        for headers in (signed(b"{}", secret=OTHER_SECRET), signed(b"{}", at=time.time() - 3600),
                        {"webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": f"v1,{WEBHOOK_SECRET}"}):
            keep(requests.post(f"{url}/caas/webhooks/payments", data=b"{}", headers=headers))
        keep(requests.post(f"{url}/caas/webhooks/payments", data=b"not json", headers=signed(b"not json")))
        for token in ("wrong", ADMIN_TOKEN[:-1]):
            keep(requests.get(f"{url}/__admin/health", headers={"Authorization": f"Bearer {token}"}))
        keep(requests.get(f"{url}/__admin/health", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}))
        keep(requests.get(f"{url}/__admin/audit", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}))
        # the gateway down: the purchase fails upstream, and says so without the key
        live.stack.service("payments").faults.add({"action": {"type": "http_error", "params": {"status": 500}}})
        from caas_sim.simulators.iot.api import MODEL_KEY

        vin = live.stack.running["iot"].app[MODEL_KEY].fleet.magic_vins()["healthy"]
        keep(requests.post(f"{url}/customers/c-1/vehicles/{vin}/purchases", data=body,
                           headers={"Authorization": "Bearer key-cust-1-s3cr3t", "Content-Type": "application/json"}))
        live.stack.service("payments").faults.clear()
        keep(requests.post(f"{url}/customers/c-1/vehicles/{vin}/purchases", data=body,
                           headers={"Authorization": "Bearer key-cust-1-s3cr3t", "Content-Type": "application/json"}))
        live.call(live.stack.advance("1h"))  # activation, callbacks: the core's own logging runs too
        statuses = sorted(int(a.split(" ", 1)[0]) for a in answers)
    assert {201, 401, 403, 400} <= set(statuses), statuses
    logs = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    for secret in secrets():
        assert secret not in logs, f"a secret is in the logs: {secret[:6]}..."
        for answer in answers:
            assert secret not in answer, f"a secret is in an answer: {secret[:6]}...: {answer[:300]}"

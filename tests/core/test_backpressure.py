"""Backpressure on webhook ingestion (``flows.backlog``): past the bound of jobs waiting,
webhooks are answered 503 problem+json with Retry-After and nothing is recorded; what was
acknowledged is processed exactly once, and a refused webhook sent again once the queue
has drained is accepted and processed once. On SQLite and PostgreSQL."""

import time

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from caas_core.api.app import create_app
from caas_core.api.context import CORE_KEY, RUNNER_KEY
from caas_core.flows import backlog
from caas_core.settings import CoreSettings
from caas_core.store import jobs
from caas_core.store.schema import jobs as jobs_table
from caas_core.store.schema import webhook_inbox
from tests.core.api.test_auth_and_webhooks import signed

BOUND = 5
OTA_STATUS = {"vin": "WCAC6SN32SZ999908", "serviceId": "heated-seats", "status": "ACTIVATED", "errorCode": None,
              "timestamp": "2026-01-05T08:00:42.000Z"}


@pytest.fixture
async def client(database_url):
    # run_jobs=False: nothing drains the queue unless the test runs it
    settings = CoreSettings(database_url=database_url, run_jobs=False, webhook_backlog=BOUND, webhook_retry_after=7)
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def send(client, n: int):
    body = orjson.dumps({**OTA_STATUS, "requestId": f"ota_backlog{n:06d}"})
    headers = {**signed(body, at=time.time(), webhook_id=f"msg_backlog_{n}"), "Content-Type": "application/json"}
    async with client.post("/caas/webhooks/ota-status", data=body, headers=headers) as answer:
        return answer.status, dict(answer.headers), await answer.read()


async def recorded(core) -> tuple[list[str], dict[str, int]]:
    """The webhook ids in the inbox, and the processing jobs by status."""
    async with core.db.transaction(readonly=True) as conn:
        ids = (await conn.scalars(select(webhook_inbox.c.webhook_id).order_by(webhook_inbox.c.webhook_id))).all()
        statuses = dict((await conn.execute(select(jobs_table.c.status, func.count()).where(
            jobs_table.c.kind == "ota.outcome").group_by(jobs_table.c.status))).all())
    return list(ids), statuses


async def test_past_the_bound_webhooks_are_refused_and_nothing_accepted_is_lost_or_run_twice(client):
    core, runner = client.server.app[CORE_KEY], client.server.app[RUNNER_KEY]
    for n in range(BOUND):
        assert (await send(client, n))[0] == 204
    status, headers, body = await send(client, BOUND)  # the queue is full: refused, nothing recorded
    assert status == 503 and headers["Retry-After"] == "7"
    assert headers["Content-Type"].startswith("application/problem+json")
    problem = orjson.loads(body)
    assert problem["status"] == 503 and problem["type"].endswith("/webhook-backlog")
    assert (await send(client, 0))[0] == 503  # a redelivery too, while it is full
    ids, statuses = await recorded(core)
    assert ids == [f"msg_backlog_{n}" for n in range(BOUND)] and statuses == {"pending": BOUND}

    assert await runner.run_due() == BOUND
    await core.backlog.sample()  # what the next check would sample in the background
    assert core.backlog.depth == 0
    assert (await send(client, BOUND))[0] == 204  # the refused one, sent again: accepted now
    assert (await send(client, 0))[0] == 204  # an accepted one, redelivered: acknowledged, not queued again
    assert await runner.run_due() == 1
    ids, statuses = await recorded(core)
    assert ids == [f"msg_backlog_{n}" for n in range(BOUND + 1)]
    assert statuses == {"done": BOUND + 1}  # each webhook processed once
    async with core.db.transaction(readonly=True) as conn:
        assert await conn.scalar(select(func.count()).select_from(webhook_inbox).where(
            webhook_inbox.c.processed_at.is_(None))) == 0


async def test_the_estimate_counts_the_queue_and_only_grows_between_samples(client):
    core = client.server.app[CORE_KEY]
    for n in range(3):
        assert (await send(client, n))[0] == 204
    assert core.backlog.depth == 3  # counted as committed, no query
    assert await jobs.count_due(core.db, now=core.clock.now(), cap=100) == 3  # (the weekly prune is not due)
    assert await jobs.count_due(core.db, now=core.clock.now(), cap=2) == 2  # the count stops at the cap
    assert await core.backlog.sample() == 3


def test_the_bound_is_a_setting_from_the_environment_and_zero_turns_it_off(monkeypatch):
    monkeypatch.setenv("CAAS_WEBHOOK_BACKLOG", "123")
    monkeypatch.setenv("CAAS_WEBHOOK_RETRY_AFTER", "9")
    settings = CoreSettings()
    assert (settings.webhook_backlog, settings.webhook_retry_after) == (123, 9)
    off = backlog.Backlog(None, None, 0, 5)  # type: ignore[arg-type]  (never reads the store)
    off.add(10**6)
    off.check()  # no bound: never refuses

"""Webhook ingestion: group commit keeps every webhook once, acknowledged after its commit."""

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, text
from standardwebhooks.webhooks import Webhook

from caas_core.api.problems import Problem
from caas_core.api.webhook_auth import verify
from caas_core.flows import webhooks
from caas_core.settings import DEVELOPMENT_SECRET
from caas_core.store import inbox
from caas_core.store.db import Database, create_engine, create_schema
from caas_core.store.schema import jobs, metadata, webhook_inbox

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request, tmp_path):
    if request.param == "sqlite":
        database = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'caas.db'}"))
        await create_schema(database.engine)
        yield database
        await database.close()
        return
    schema = f"load_{uuid.uuid4().hex[:16]}"
    database = Database(create_engine(POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}}))
    async with database.engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(metadata.create_all, checkfirst=False)
    yield database
    async with database.engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await database.close()


def _core(db):
    woken = []
    return SimpleNamespace(db=db, clock=SimpleNamespace(now=lambda: 1000.0), wake=lambda: woken.append(1),
                           backlog=None), woken


async def test_concurrent_deliveries_are_recorded_once_with_one_job(db):
    core, woken = _core(db)
    group = webhooks.GroupCommit(core)
    ids = [f"msg_{n}" for n in range(60)]
    # every id three times, interleaved, all in flight together: some repeats share a batch
    calls = [group.submit("iot", i, f'{{"requestId": "{i}"}}', None) for _ in range(3) for i in ids]
    calls += [group.submit("elsewhere", "msg_0", "{}", None)]  # ids are per source; no processor: recorded
    results = await asyncio.gather(*calls)
    assert sum(results) == len(ids) + 1  # exactly one delivery of each is "new"
    async with db.transaction(readonly=True) as conn:
        assert await conn.scalar(select(func.count()).select_from(webhook_inbox)) == len(ids) + 1
        assert await conn.scalar(select(func.count()).select_from(jobs)) == len(ids)
        payload = await conn.scalar(select(jobs.c.payload).where(jobs.c.dedupe_key == "webhook:iot:msg_7"))
        recorded = await inbox.get(conn, "elsewhere", "msg_0")
    assert payload == {"source": "iot", "webhookId": "msg_7", "body": {"requestId": "msg_7"}}
    assert recorded["outcome"] == "recorded" and recorded["processed_at"] == 1000.0
    assert woken
    # a later redelivery is still a duplicate
    assert await group.submit("iot", "msg_3", "{}", None) is False


async def test_webhooks_arriving_turn_after_turn_share_one_commit(db):
    core, _ = _core(db)
    group = webhooks.GroupCommit(core)
    batches = []
    commit = group._commit

    async def counted(batch):
        batches.append(len(batch))
        return await commit(batch)

    group._commit = counted

    async def arrive(turn: int) -> bool:  # as requests read in successive turns of the loop
        for _ in range(turn):
            await asyncio.sleep(0)
        return await group.submit("iot", f"msg_{turn}", "{}", None)

    assert all(await asyncio.gather(*(arrive(turn) for turn in range(8))))
    assert batches == [8]
    assert await group.submit("iot", "msg_lone", "{}", None)  # a turn brings nothing more: committed alone
    assert batches == [8, 1]


async def test_a_failed_commit_acknowledges_nothing(db):
    core, _ = _core(db)
    group = webhooks.GroupCommit(core)
    await db.close()  # the database goes away under the batch
    core.db = Database(create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    results = await asyncio.gather(group.submit("iot", "a", "{}", None), group.submit("iot", "b", "{}", None),
                                   return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
    assert group.flushing is None and not group.pending


def test_signature_matches_the_standard_webhooks_package():
    body = b'{"status": "ACTIVATED", "vin": "caf\xc3\xa9"}'
    sent = int(time.time())
    header = Webhook(DEVELOPMENT_SECRET).sign("msg_1", datetime.fromtimestamp(sent, tz=UTC), body.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(sent), "webhook-signature": f"v1,bogus= {header}"}
    assert verify(body, headers, DEVELOPMENT_SECRET, now=sent, tolerance=300) == ("msg_1", {
        "status": "ACTIVATED", "vin": "café"})
    with pytest.raises(Problem) as refused:
        verify(body + b" ", headers, DEVELOPMENT_SECRET, now=sent, tolerance=300)
    assert refused.value.status == 401
    key = base64.b64decode(DEVELOPMENT_SECRET.removeprefix("whsec_"))
    mine = base64.b64encode(hmac.new(key, f"msg_1.{sent}.".encode() + body, hashlib.sha256).digest()).decode()
    assert header == f"v1,{mine}"


async def test_a_sqlite_batch_transaction_commits_whole_or_not_at_all(tmp_path):
    database = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'caas.db'}")
    try:
        def insert(sqlite, fail: bool = False):
            sqlite.execute("INSERT INTO webhook_inbox (source, webhook_id, received_at, payload) "
                           "VALUES ('iot', ?, 1.0, '{}')", (f"msg_{fail}",))
            if fail:
                raise RuntimeError("half-way")
            return sqlite.in_transaction

        assert await database.run_sqlite_transaction(insert) is True  # ran inside BEGIN .. COMMIT
        with pytest.raises(RuntimeError, match="half-way"):
            await database.run_sqlite_transaction(lambda sqlite: insert(sqlite, fail=True))
        async with database.transaction(readonly=True) as conn:  # another connection sees the commit only
            ids = (await conn.scalars(select(webhook_inbox.c.webhook_id))).all()
        assert ids == ["msg_False"]
        assert await database.run_sqlite_transaction(lambda sqlite: sqlite.in_transaction) is True  # still usable
    finally:
        await database.close()

"""OTA callbacks processed in batches (``ota.outcome_batch``, the runner's ``batches``) do
exactly what processing them one by one does, in the same order: the same purchases,
jobs, notifications and inbox records, on SQLite and PostgreSQL. A batch that fails is
rolled back and its jobs run one by one."""

import aiohttp
import orjson
import pytest
from sqlalchemy import insert, select

from caas_core import compose
from caas_core.clock import CoreClock
from caas_core.flows import ota, webhooks
from caas_core.flows.runner import JobRunner
from caas_core.settings import CoreSettings
from caas_core.store import jobs
from caas_core.store.db import create_schema, drop_schema
from caas_core.store.schema import jobs as jobs_table
from caas_core.store.schema import notifications, purchases, webhook_inbox

T = 1_767_600_000.0
VIN, OTHER_VIN = "WCAC6SN32SZ999908", "WCAB4BBU1SZ999901"

# (purchase id, vin, status, activation request id, created): pur_c is the vehicle's latest
PURCHASES = [("pur_a", VIN, "ACTIVATING", "ota_a", T - 100), ("pur_b", OTHER_VIN, "ACTIVATING", "ota_b", T - 100),
             ("pur_c", VIN, "ACTIVE", "ota_c", T - 50)]
# Callbacks in arrival order: the duplicate of ota_a (another webhook id) must see what the
# first made of pur_a, in a batch as one by one.
CALLBACKS = [("ota_a", VIN, "ACTIVATED", None), ("ota_b", OTHER_VIN, "FAILED", "VEHICLE_OFFLINE"),
             ("ota_a", VIN, "ACTIVATED", None), ("ota_old", VIN, "FAILED", "TIMEOUT"),
             ("ota_unknown", "WCAZZZZZZZZ999999", "ACTIVATED", None), ("ota_c", VIN, "DEACTIVATED", None)]


async def _world(db, clock) -> compose.Core:
    session = aiohttp.ClientSession()  # never used: processing callbacks calls no peer
    core = compose.build_core(CoreSettings(), clock, db, session)
    core.session = session
    async with db.transaction() as conn:
        for purchase_id, vin, status, request_id, created in PURCHASES:
            await conn.execute(insert(purchases).values(
                id=purchase_id, customer_id="c-1", vin=vin, service_id="heated-seats", duration_type="PERMANENT",
                status=status, price_minor=1000, currency="EUR", activation_request_id=request_id,
                created_at=created, updated_at=created))
    for n, (request_id, vin, status, error) in enumerate(CALLBACKS):
        body = {"requestId": request_id, "vin": vin, "serviceId": "heated-seats", "status": status,
                "errorCode": error, "timestamp": "2026-01-05T08:00:42.000Z"}
        await webhooks.receive(core, "iot", f"msg_{n}", body, f"cor-{n}", orjson.dumps(body))
    await webhooks.receive(core, "iot", "msg_bad", {"nonsense": True}, None)  # acknowledged and recorded
    return core


async def _snapshot(db) -> dict:
    async with db.transaction(readonly=True) as conn:
        rows = lambda table, *order: conn.execute(select(table).order_by(*order))
        return {
            "purchases": [dict(r) for r in (await rows(purchases, purchases.c.id)).mappings()],
            "jobs": sorted((r["kind"], r["status"], r["dedupe_key"], orjson.dumps(r["payload"], option=orjson.OPT_SORT_KEYS),
                            r["run_at"], r["attempts"]) for r in (await rows(jobs_table, jobs_table.c.id)).mappings()),
            "inbox": [(r["webhook_id"], r["processed_at"], r["outcome"])
                      for r in (await rows(webhook_inbox, webhook_inbox.c.webhook_id)).mappings()],
            "notifications": sorted((r["customer_id"], r["channel"], r["template"], orjson.dumps(r["payload"]))
                                    for r in (await rows(notifications, notifications.c.id)).mappings()),
        }


async def _processed(db, *, batched: bool, broken: bool = False) -> dict:
    await drop_schema(db.engine)
    await create_schema(db.engine)
    clock = CoreClock("virtual", start=T)
    core = await _world(db, clock)
    try:
        batches = {}
        if batched:
            async def batch(queue, ctx):
                assert [job.kind for job in queue] == [ota.OUTCOME] * len(queue)
                if broken:
                    async with db.transaction() as conn:  # something done, then a failure: all rolled back
                        await jobs.complete_many(conn, [job.id for job in queue])
                        raise RuntimeError("a batch that breaks")
                await ota.outcome_batch(core, queue, ctx)
            batches = {ota.OUTCOME: batch}
        # Callbacks only: what they cause (a reconciliation asking the vehicle) finds no handler
        # here and is put back for later, the same way in both runs, and no peer is called.
        handlers = {ota.OUTCOME: compose.handlers(core)[ota.OUTCOME]}
        runner = JobRunner(db, clock, handlers, worker="w1", batches=batches)
        assert await runner.run_due() >= len(CALLBACKS)
        return await _snapshot(db)
    finally:
        await core.session.close()


async def test_a_batch_of_callbacks_does_what_they_do_one_by_one(target):
    db = await target.open()
    one_by_one = await _processed(db, batched=False)
    assert await _processed(db, batched=True) == one_by_one
    by_id = {p["id"]: p for p in one_by_one["purchases"]}
    assert by_id["pur_a"]["status"] == "ACTIVE" and by_id["pur_b"]["status"] == "ACTIVATION_QUEUED"
    assert all(outcome is not None for _, _, outcome in one_by_one["inbox"])  # every webhook handled
    assert sum(kind == ota.OUTCOME and status == "done" for kind, status, *_ in one_by_one["jobs"]) == len(CALLBACKS)


async def test_a_batch_that_fails_is_rolled_back_and_its_jobs_run_one_by_one(target):
    db = await target.open()
    one_by_one = await _processed(db, batched=False)
    assert await _processed(db, batched=True, broken=True) == one_by_one


@pytest.mark.parametrize("mode", ["virtual", "scaled"])
async def test_the_runner_hands_consecutive_jobs_of_a_batchable_kind_over_together(target, mode):
    db = await target.open()
    clock = CoreClock(mode, scale=20.0)
    now = clock.now()
    seen: list[list[str]] = []

    async def single(job, ctx):
        seen.append([job.payload["n"]])
        async with ctx.db.transaction() as conn:
            await jobs.complete(conn, job.id)

    async def batch(queue, ctx):
        seen.append([job.payload["n"] for job in queue])
        async with ctx.db.transaction() as conn:
            await jobs.complete_many(conn, [job.id for job in queue])

    async with db.transaction() as conn:  # lanes: a (batchable only), b (mixed: one by one, in order)
        for n, (kind, lane) in enumerate([("b", "a"), ("b", "b"), ("s", "b"), ("b", "a"), ("b", "c")]):
            await jobs.enqueue(conn, kind, {"n": n}, run_at=now - 10 + n, now=now, correlation_id=lane)
    runner = JobRunner(db, clock, {"b": single, "s": single}, worker="w1", batches={"b": batch})
    assert await runner.run_due() == 5
    if mode == "virtual":  # in claim order, consecutive ones together
        assert seen == [[0, 1], [2], [3, 4]]
    else:  # the lanes of batchable jobs only, together, in claim order; the mixed lane one by one
        assert sorted(seen) == [[0, 3, 4], [1], [2]]
        assert seen.index([1]) < seen.index([2])
    assert await jobs.count(db, "done") == 5

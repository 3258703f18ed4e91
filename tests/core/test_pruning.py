"""The prune job: once per interval of the core's clock (a day here, a week by default), one row for the whole deployment, on SQLite and PostgreSQL."""

import asyncio
import json
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update

from caas_core import compose
from caas_core.api.app import create_app
from caas_core.clock import DEFAULT_EPOCH, CoreClock, parse_instant
from caas_core.flows import pruning
from caas_core.flows.runner import JobRunner
from caas_core.settings import CoreSettings
from caas_core.store import inbox, jobs
from caas_core.store.db import Database
from caas_core.store.schema import jobs as jobs_table
from caas_core.store.schema import webhook_inbox

DAY = 86400.0
WEEK = 7 * DAY
#: The first midnight after the default start of virtual time (2026-01-05T08:00Z).
MIDNIGHT = parse_instant("2026-01-06T00:00:00+00:00")


def _core(db, **settings):
    return SimpleNamespace(db=db, clock=CoreClock("virtual"), settings=CoreSettings(**{"prune_interval": DAY,
                                                                                        **settings}))


async def _finished_job(db, name: str, updated_at: float) -> None:
    async with db.transaction() as conn:
        job_id = await jobs.enqueue(conn, "ota.activate", {}, run_at=updated_at, now=updated_at,
                                    dedupe_key=f"test:{name}")
        await conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(status="done"))


async def _prune_jobs(db) -> list[dict]:
    async with db.transaction(readonly=True) as conn:
        rows = (await conn.execute(select(jobs_table).where(jobs_table.c.kind == pruning.PRUNE))).mappings().all()
    return [dict(row) for row in rows]


async def _keys(db) -> set[str]:
    async with db.transaction(readonly=True) as conn:
        return set((await conn.scalars(select(jobs_table.c.dedupe_key))).all())


def test_next_run_is_the_next_boundary():
    assert pruning.next_run(DEFAULT_EPOCH, DAY) == MIDNIGHT
    assert pruning.next_run(MIDNIGHT, DAY) == MIDNIGHT + DAY  # at a boundary: the next one
    assert pruning.next_run(MIDNIGHT + 1, 3600) == MIDNIGHT + 3600


async def test_the_prune_job_runs_at_each_midnight_and_reschedules_itself(db):
    core = _core(db)
    job_id = await pruning.schedule(core)
    await _finished_job(db, "gone-first-night", DEFAULT_EPOCH - WEEK + 3600)   # a week old before midnight
    await _finished_job(db, "gone-second-night", MIDNIGHT - WEEK + 3600)      # ...before the next one
    async with db.transaction() as conn:
        await inbox.accept_many(conn, [inbox.Arrival("payments", "msg-old", json.dumps({}))], DEFAULT_EPOCH - WEEK)
        await inbox.mark_processed(conn, "payments", "msg-old", "processed", DEFAULT_EPOCH - WEEK)
    runner = JobRunner(db, core.clock, compose.handlers(core), worker="w1")

    assert await runner.advance_to(MIDNIGHT - 1) == 0
    assert await runner.advance_to(MIDNIGHT) == 1
    assert await _keys(db) == {pruning.PRUNE, "test:gone-second-night"}
    async with db.transaction(readonly=True) as conn:
        assert await conn.scalar(select(webhook_inbox.c.webhook_id)) is None
    [job] = await _prune_jobs(db)
    assert (job["id"], job["status"], job["run_at"], job["attempts"]) == (job_id, "pending", MIDNIGHT + DAY, 0)

    assert await runner.advance_to(MIDNIGHT + 2 * DAY + 3600) == 2  # the next two midnights
    assert await _keys(db) == {pruning.PRUNE}
    [job] = await _prune_jobs(db)
    assert (job["id"], job["status"], job["run_at"]) == (job_id, "pending", MIDNIGHT + 3 * DAY)
    assert await runner.next_due() == MIDNIGHT + 3 * DAY  # due tomorrow, so nothing is due now


async def test_scheduling_again_or_from_several_processes_keeps_one_job(target):
    cores = [_core(await target.open()) for _ in range(3)]
    ids = await asyncio.gather(*(pruning.schedule(core) for core in cores))
    assert len(set(ids)) == 1
    cores[0].clock.move_to(MIDNIGHT + 3600)  # a restart the next day, the job already due
    assert await pruning.schedule(cores[0]) == ids[0]
    [job] = await _prune_jobs(cores[0].db)
    assert job["run_at"] == MIDNIGHT  # untouched: it runs when due, then reschedules itself


async def test_two_cores_on_one_database_share_one_prune_job_and_reset_brings_it_back(tmp_path):
    settings = CoreSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", clock="virtual")
    first = TestClient(TestServer(create_app(settings)))
    second = TestClient(TestServer(create_app(settings)))
    await first.start_server()
    await second.start_server()
    try:
        async with await Database.open(settings.database_url, create=False) as db:
            assert len(await _prune_jobs(db)) == 1
            async with first.get("/__admin/health") as r:
                health = await r.json()
                assert health["pendingTimers"] == 1 and health["nextDue"] is None  # pending, setting no pace
            async with second.post("/__admin/reset") as r:
                assert r.status == 200
            assert len(await _prune_jobs(db)) == 1
    finally:
        await first.close()
        await second.close()


async def test_a_world_advanced_for_days_prunes_without_a_step_of_its_own(tmp_path):
    from caas_sim.scenarios.stack import Stack

    stack = Stack(services=["iot"], seed=0, core={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'core.db'}",
                                                  "prune_interval": DAY})
    async with stack:
        from caas_core.api.app import CORE_KEY, RUNNER_KEY

        db, runner = stack.running["core"].app[CORE_KEY].db, stack.running["core"].app[RUNNER_KEY]
        assert db.private  # a world on a virtual clock owns its database (SQLite on the loop's thread)
        assert await runner.next_due() is None  # housekeeping never sets the pace of the clock
        assert await stack.advance("2d") == 1  # two midnights passed: the prune ran once, at the end
        [job] = await _prune_jobs(db)
        assert job["status"] == "pending" and job["run_at"] == MIDNIGHT + 2 * DAY


def test_retention_settings_default_to_a_week_and_must_be_positive():
    settings = CoreSettings()
    assert settings.inbox_retention == settings.job_retention == settings.prune_interval == WEEK
    for field in ("inbox_retention", "job_retention", "prune_interval"):
        with pytest.raises(ValueError, match=field):
            CoreSettings(**{field: 0})

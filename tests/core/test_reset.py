"""``POST /__admin/reset`` on the core: the tables are dropped only once nothing is at work on
them. A job or a request at work has a grace to finish, then is cancelled; on a virtual clock
what waits on the clock is cancelled at once. Nothing of the old world reaches the new one.
On SQLite and PostgreSQL, the core alone (its peers are test doubles)."""

import asyncio
import contextlib
import time
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from caas_core.api import quiesce
from caas_core.api.app import CORE_KEY, RUNNER_KEY, create_app
from caas_core.flows.pruning import PRUNE
from caas_core.settings import CoreSettings
from caas_core.store import jobs, outbox
from caas_core.store.schema import jobs as jobs_table
from caas_core.store.schema import purchases, vehicles

BLOCKED = "test.blocked"
VIN = "WCAS9Z8W0SZ001000"
KEYS = {"k-c1": {"role": "customer", "subject": "c-1"}}


@contextlib.asynccontextmanager
async def serving(database_url, clock):
    client = TestClient(TestServer(create_app(CoreSettings(database_url=database_url, clock=clock, api_keys=KEYS))))
    await client.start_server()
    try:
        yield client, client.app[CORE_KEY], client.app[RUNNER_KEY]
    finally:
        await client.close()


class Blocked:
    """A job (or a call) that stops half-way until released, then writes to the world."""

    def __init__(self, core, *, parked):
        self.core, self.parked = core, parked
        self.started, self.ended = asyncio.Event(), asyncio.Event()
        self.release = asyncio.get_running_loop().create_future()
        self.outcome = None

    def answer(self):
        """The peer answers at last (or the work it waited for is done)."""
        if not self.release.done():  # (cancelled with the wait)
            self.release.set_result(None)

    async def wait(self):
        self.started.set()
        try:
            if self.parked:  # waiting on a peer's answer: parked on the core's clock
                await self.core.clock.within(self.release, 3600)
            else:  # at work
                await self.release
        except asyncio.CancelledError:
            self.outcome = "cancelled"
            self.ended.set()
            raise

    async def job(self, job, ctx):
        await self.wait()
        async with self.core.db.transaction() as conn:
            await outbox.notify(conn, "c-old", "email", "OLD_WORLD", {}, self.core.clock.now())
            await jobs.complete(conn, job.id)
        self.outcome = "wrote"
        self.ended.set()

    async def vehicle_status(self, vin, *, correlation_id):
        await self.wait()
        return SimpleNamespace(model="ZEPHYR-EV")


async def _start_job(core, runner, blocked):
    runner.handlers[BLOCKED] = blocked.job
    async with core.db.transaction() as conn:
        await jobs.enqueue(conn, BLOCKED, {}, run_at=core.clock.now(), now=core.clock.now())
    core.wake()
    await asyncio.wait_for(blocked.started.wait(), 10)


async def _reset(client) -> float:
    started = time.monotonic()
    async with client.post("/__admin/reset") as r:
        assert r.status == 200, await r.text()
    return time.monotonic() - started


async def _old_world_left(core) -> list:
    async with core.db.transaction(readonly=True) as conn:
        return [n.template for n in await outbox.notifications_for(conn, "c-old")] + [
            row.vin for row in await conn.execute(vehicles.select())] + [
            row.id for row in await conn.execute(purchases.select())]


async def test_a_job_waiting_on_a_peer_in_virtual_time_is_cancelled_at_once_and_writes_nothing_after(database_url):
    async with serving(database_url, "virtual") as (client, core, runner):
        blocked = Blocked(core, parked=True)
        await _start_job(core, runner, blocked)
        took = await _reset(client)
        assert took < quiesce.GRACE / 2  # nothing moves the clock during a reset: no grace waited out
        blocked.answer()  # the peer answers at last
        await asyncio.wait_for(blocked.ended.wait(), 10)
        assert blocked.outcome == "cancelled"
        assert await _old_world_left(core) == []
        async with core.db.transaction(readonly=True) as conn:
            assert (await conn.execute(select(jobs_table.c.kind))).scalars().all() == [PRUNE]  # the new world's own


@pytest.mark.parametrize("finishes", [True, False], ids=["finishes-in-the-grace", "outlasts-it"])
async def test_a_job_at_work_has_a_grace_to_finish_then_is_cancelled(database_url, monkeypatch, finishes):
    monkeypatch.setattr(quiesce, "GRACE", 5.0 if finishes else 0.3)
    async with serving(database_url, "real") as (client, core, runner):
        blocked = Blocked(core, parked=False)
        await _start_job(core, runner, blocked)
        if finishes:  # done shortly after the reset began: it writes to the old world, which goes
            asyncio.get_running_loop().call_later(0.05, blocked.answer)
        took = await _reset(client)
        assert took < quiesce.GRACE + 2
        if not finishes:
            assert took >= quiesce.GRACE  # it had its grace
            blocked.answer()
        await asyncio.wait_for(blocked.ended.wait(), 10)
        assert blocked.outcome == ("wrote" if finishes else "cancelled")
        assert await _old_world_left(core) == []


async def test_a_request_waiting_on_a_peer_across_a_reset_is_dropped_and_leaves_nothing(database_url):
    async with serving(database_url, "virtual") as (client, core, _runner):
        blocked = Blocked(core, parked=True)
        core.iot = blocked  # the fleet holds its answer: is the vehicle there?
        buying = asyncio.ensure_future(client.post(
            f"/customers/c-1/vehicles/{VIN}/purchases", headers={"Authorization": "Bearer k-c1"},
            json={"serviceId": "heated-seats", "durationType": "PERMANENT",
                  "paymentMethod": {"type": "CARD", "token": "pm_card_visa"}}))
        await asyncio.wait_for(blocked.started.wait(), 10)
        took = await _reset(client)
        assert took < quiesce.GRACE / 2
        blocked.answer()
        with pytest.raises(aiohttp.ServerDisconnectedError):  # no answer, as from a restarting server
            await buying
        assert blocked.outcome == "cancelled"
        assert await _old_world_left(core) == []
        async with client.get("/__admin/health") as r:  # and the core serves the new world: its prune job alone
            assert r.status == 200 and (await r.json())["pendingTimers"] == 1

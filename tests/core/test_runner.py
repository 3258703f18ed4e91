"""Durable jobs run as the core's clock passes them, on SQLite and PostgreSQL."""

import asyncio

from caas_core.clock import CoreClock
from caas_core.flows.runner import ERROR_RETRY_DELAY, JobRunner
from caas_core.store import jobs


async def test_virtual_time_runs_jobs_in_run_at_order_at_their_time(target):
    db = await target.open()
    clock = CoreClock("virtual")
    t0 = clock.now()
    ran = []

    async def record(job, ctx):
        ran.append((job.payload["n"], ctx.clock.now() - t0))
        async with ctx.db.transaction() as conn:
            await jobs.complete(conn, job.id)
            if job.payload["n"] == 2:  # a job that causes another, committed with its completion
                await jobs.enqueue(conn, "record", {"n": 4}, run_at=ctx.clock.now() + 3, now=ctx.clock.now())

    async with db.transaction() as conn:
        for n, delay in ((1, 10), (2, 5), (3, 30)):
            await jobs.enqueue(conn, "record", {"n": n}, run_at=t0 + delay, now=t0)
    runner = JobRunner(db, clock, {"record": record}, worker="w1")
    assert await runner.advance_to(t0 + 20) == 3
    assert ran == [(2, 5), (4, 8), (1, 10)]
    assert clock.now() == t0 + 20 and await runner.next_due() == t0 + 30


async def test_a_failing_job_is_retried_on_the_clock_then_failed(target):
    db = await target.open()
    clock = CoreClock("virtual")
    t0 = clock.now()
    calls = []

    async def broken(job, ctx):
        calls.append(ctx.clock.now() - t0)
        raise RuntimeError("upstream bug")

    async with db.transaction() as conn:
        job_id = await jobs.enqueue(conn, "broken", {}, run_at=t0, now=t0)
    runner = JobRunner(db, clock, {"broken": broken}, worker="w1")
    await runner.advance_to(t0 + 10 * ERROR_RETRY_DELAY)
    assert calls == [n * ERROR_RETRY_DELAY for n in range(5)]
    assert (await jobs.get(db, job_id))["status"] == "failed"


async def test_serve_runs_what_is_due_now_without_moving_a_virtual_clock(target):
    db = await target.open()
    clock = CoreClock("virtual")
    done = asyncio.Event()

    async def work(job, ctx):
        async with ctx.db.transaction() as conn:
            await jobs.complete(conn, job.id)
        done.set()

    runner = JobRunner(db, clock, {"work": work}, worker="w1")
    stop = asyncio.Event()
    serving = asyncio.ensure_future(runner.serve(stop))
    async with db.transaction() as conn:
        await jobs.enqueue(conn, "work", {}, run_at=clock.now(), now=clock.now())
    runner.kick()
    await asyncio.wait_for(done.wait(), timeout=5)
    stop.set()
    await asyncio.wait_for(serving, timeout=5)


async def test_serve_stops_claiming_when_told_even_with_a_backlog(target):
    db = await target.open()
    clock = CoreClock("real")
    now = clock.now()
    stop = asyncio.Event()
    ran = []

    async def work(job, ctx):
        ran.append(job.id)
        async with ctx.db.transaction() as conn:
            await jobs.complete(conn, job.id)
        if len(ran) == 3:
            stop.set()  # as a SIGTERM would, half-way through the first claim

    async with db.transaction() as conn:
        for n in range(100):
            await jobs.enqueue(conn, "work", {"n": n}, run_at=now, now=now)
    runner = JobRunner(db, clock, {"work": work}, worker="w1", batch=10, lanes=1)
    await asyncio.wait_for(runner.serve(stop), timeout=30)
    assert len(ran) == 10  # the claim under way finished; nothing more was claimed
    assert await jobs.count(db, "pending") == 90

"""Real and scaled time: claimed jobs run side by side, one lane per correlation id."""

import asyncio

from caas_core.clock import CoreClock
from caas_core.flows.runner import JobRunner
from caas_core.store import jobs


async def _run_all(target, mode: str) -> list[str]:
    db = await target.open()
    clock = CoreClock(mode, scale=20.0)
    now = clock.now()
    events = []
    b_ran = asyncio.Event()

    async def work(job, ctx):
        lane, n = job.correlation_id, job.payload["n"]
        events.append(f"start {lane}{n}")
        if lane == "a" and n == 1 and mode != "virtual":
            await asyncio.wait_for(b_ran.wait(), 5)  # only b's job, running beside it, sets this
        if lane == "b":
            b_ran.set()
        async with ctx.db.transaction() as conn:
            await jobs.complete(conn, job.id)
        events.append(f"end {lane}{n}")

    async with db.transaction() as conn:
        for n, lane in ((1, "a"), (2, "a"), (3, "b")):
            await jobs.enqueue(conn, "work", {"n": n}, run_at=now - 10 + n, now=now, correlation_id=lane)
    runner = JobRunner(db, clock, {"work": work}, worker="w1")
    assert await runner.run_due() == 3
    return events


async def test_lanes_run_side_by_side_and_each_in_order(target):
    events = await _run_all(target, "scaled")
    # a1 waits until b3 runs: only possible side by side; a2 still waits for a1 (same purchase)
    assert events.index("start b3") < events.index("end a1") < events.index("start a2")


async def test_virtual_time_runs_one_job_at_a_time(target):
    events = await _run_all(target, "virtual")
    assert events == ["start a1", "end a1", "start a2", "end a2", "start b3", "end b3"]

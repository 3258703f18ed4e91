"""Quiet before a reset: ``/__admin/reset`` drops the tables, so nothing may be at work on
them meanwhile, nor go on afterwards in the fresh world with what it read from the old one
(a job's or a request's write would land there, or fail on a missing table).

New requests wait at a gate and the job runner starts nothing; the requests and the jobs at
work have ``GRACE`` seconds to finish, then what is left is cancelled: a request gets no
answer (its connection dropped, as a restarting server's: the simulators' kit does the same
with a request held across its reset, ``ResetWhileHeld``), a job's claim goes with the
tables. On a virtual clock, work parked on the clock (a call waiting on a peer's answer) is
cancelled at once: nothing moves the clock during a reset, so it would only wait the grace
out. A request waiting for the runner to resume (a clock move, a health check) holds
nothing: it goes on in the fresh world.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from ..clock import CoreClock
from ..flows.runner import JobRunner

log = logging.getLogger("caas_core.api")

#: Real seconds the work in flight has to finish before a reset cancels it.
GRACE = 5.0
#: Real seconds between two looks at the work left (whether it is all parked on the clock).
_LOOK = 0.005


class Requests:
    """The requests at work, and the gate new ones wait at while the world is reset."""

    def __init__(self) -> None:
        self.at_work: set[asyncio.Task] = set()
        self.open = asyncio.Event()
        self.open.set()
        self.resetting = asyncio.Lock()  # one reset at a time


@contextlib.asynccontextmanager
async def quiet(requests: Requests, runner: JobRunner, clock: CoreClock) -> AsyncIterator[None]:
    """The world at rest for the body (a reset): no request nor job at work, none starting."""
    me = asyncio.current_task()
    requests.at_work.discard(me)  # a reset waits for the others, not for itself nor for another reset
    async with requests.resetting:
        requests.open.clear()
        runner.pause()
        try:
            await _settle(requests, runner, clock, me)
            yield
        finally:
            runner.resume()
            requests.open.set()


async def _settle(requests: Requests, runner: JobRunner, clock: CoreClock, me: asyncio.Task | None) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GRACE
    while True:
        left = {task for task in requests.at_work - runner.waiting if task is not me and not task.done()}
        if runner.at_rest and not left:
            return
        # on a virtual clock, all that is left waits on it: health's ``busy`` would be 0
        all_parked = clock.mode == "virtual" and runner.busy + len(left) <= clock.parked
        if all_parked or loop.time() >= deadline:
            break
        await _ended(runner, left, timeout=_LOOK, all_of_them=False)
    log.log(logging.INFO if all_parked else logging.WARNING, "reset: cancelling %d request(s)%s still at work",
            len(left), "" if runner.at_rest else " and the jobs")
    runner.cut_short()
    for task in left:
        task.cancel()
    if not await _ended(runner, left, timeout=GRACE, all_of_them=True):  # cancelled, they only roll back
        log.error("reset: work still under way once cancelled")


async def _ended(runner: JobRunner, tasks: set[asyncio.Task], *, timeout: float, all_of_them: bool) -> bool:
    """Whether the runner's work and ``tasks`` ended (any of them, or all) within ``timeout``."""
    watched = set(tasks)
    rest = None if runner.at_rest else asyncio.ensure_future(runner.quiet())
    if rest is not None:
        watched.add(rest)
    if not watched:
        return True
    try:
        _, pending = await asyncio.wait(watched, timeout=timeout, return_when=asyncio.ALL_COMPLETED if all_of_them
                                        else asyncio.FIRST_COMPLETED)
        return not pending
    finally:
        if rest is not None:
            rest.cancel()

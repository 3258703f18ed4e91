"""Moving the world's clocks from the dashboard, as ``caas-sim clock advance`` does.

Every service whose clock can move goes to the target together, event by event, through
the ``RemoteCoordinator`` (``caas_sim.scenarios.scenario.coordinator``): each clock reaches the next
instant something is due before any service acts there, simulators fire first, then the
core, and the world settles in between. A service on a real-time clock is left out and
named; one that serves no ``/__admin/health`` (a foreign core) keeps its own clock and is
named too. A world whose time runs by itself (the coordinator finds it paced) cannot be
moved from here at all.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp

from caas_sim.simulators.client import AdminClient, AdminError, AdminUnreachable

from ..scenario.coordinator import RemoteCoordinator, absent


class ClockRefused(Exception):
    """The move cannot be made (409): nothing is due, clocks cannot move, a move is on."""


class ClockUnreachable(Exception):
    """A service needed for the move does not answer (502)."""


@dataclass
class Moved:
    clocks: dict[str, dict]
    seconds: float
    notes: list[str] = field(default_factory=list)


async def move(services: dict[str, str], *, token: str | None, seconds: float | None = None,
               to_next: bool = False) -> Moved:
    """Advance every movable clock of ``services`` by ``seconds``, or to the next instant
    anything in the world is due (``to_next``)."""
    notes: list[str] = []
    async with aiohttp.ClientSession() as session:
        healths = await asyncio.gather(*(AdminClient(url, token=token, session=session, timeout=10).health()
                                         for url in services.values()), return_exceptions=True)
    movable: dict[str, str] = {}
    for (name, url), health in zip(services.items(), healths):
        if isinstance(health, AdminUnreachable):
            raise ClockUnreachable(f"cannot reach {name} at {url}: {health.reason}")
        if isinstance(health, AdminError):
            if absent(health):
                notes.append(f"{name} serves no /__admin/health: its clock is its own, not moved")
                continue
            raise health
        if isinstance(health, BaseException):
            raise health
        if health["clock"]["mode"] == "real":
            notes.append(f"{name}: a real-time clock cannot be moved")
            continue
        movable[name] = url
    if not movable:
        raise ClockRefused("no clock here can be moved" + (f" ({'; '.join(notes)})" if notes else ""))
    world = await RemoteCoordinator(movable, token=token, notify=notes.append).start()
    try:
        if world.rate is not None:
            raise ClockRefused(f"time runs by itself in this world ({world.clock_label}): it cannot be moved"
                               + (f" ({'; '.join(notes)})" if notes else ""))
        start = world.now()
        if to_next:
            due = await world.next_due()
            if due is None:
                raise ClockRefused("nothing is due: no timer, job or delivery waits on the clock")
            target = due
        else:
            target = start + float(seconds or 0)
        await world.advance_to(target)
        clocks = {name: await world.admin(name).clock() for name in movable}
        return Moved(clocks, world.now() - start, notes)
    finally:
        await world.close()

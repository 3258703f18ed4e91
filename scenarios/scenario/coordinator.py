"""One virtual clock for the whole world, in-process or across processes.

Both coordinators speak the admin protocol (contracts/admin.yaml) for faults
and journals; they differ in how time moves:

- ``StackCoordinator`` owns a ``Stack`` (every simulator and the core in this
  process) and lets ``Stack.advance`` step the simulators' clock and the
  core's durable jobs together, event by event;
- ``RemoteCoordinator`` drives services started elsewhere (``caas-sim up``,
  another team's core) by URL: it waits until every service is settled
  (busy 0, and a short real quiet period, since bytes may be in flight between
  processes), moves every clock to the earliest next-due time with
  ``POST /__admin/clock``, and repeats until the target.

Either way no service ever hears from a later time than its own: every clock
reaches the next instant before anything due there runs (a webhook the factory
sends on 15 January reaches a core that is on 15 January, not one step behind).
Across processes that takes two passes: every clock moves with ``fire: false``
(contracts/admin.yaml), then each fires what is due, simulators before the core
as in one process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp

from simulators.client import AdminClient, AdminError
from simulators.kit.clock import Clock, isoformat, parse_datetime

T = TypeVar("T")

#: Real-time quiet period across processes: this many polls in a row with
#: nothing busy and nothing newly due, this far apart.
QUIET_POLLS = 3
QUIET_INTERVAL = 0.01
#: The admin protocol's time resolution (instants are ISO 8601 with milliseconds).
MS = 0.001


class Coordinator(Protocol):
    """What the runner needs of a world."""

    session: aiohttp.ClientSession

    def url(self, service: str) -> str: ...
    def services(self) -> list[str]: ...
    def now(self) -> float: ...
    async def next_due(self) -> float | None: ...
    async def advance_to(self, target: float) -> None: ...
    async def during(self, call: Awaitable[T]) -> T: ...
    def admin(self, service: str) -> AdminClient: ...
    async def collection_cases(self) -> list[dict] | None: ...
    async def close(self) -> None: ...


class _AdminMixin:
    session: aiohttp.ClientSession
    _admins: dict[str, AdminClient]

    def url(self, service: str) -> str:
        raise NotImplementedError

    def admin(self, service: str) -> AdminClient:
        if service not in self._admins:
            self._admins[service] = AdminClient(self.url(service), session=self.session, timeout=None)
        return self._admins[service]


class StackCoordinator(_AdminMixin):
    """Every service in this process on one clock, the core on a SQLite file in ``folder``."""

    def __init__(self, *, services: list[str], seed: int, folder: Path, api_keys: dict[str, dict],
                 core_settings: dict[str, Any] | None = None, options: dict[str, dict] | None = None):
        from ..stack import Stack

        self.stack = Stack(services=list(services), seed=seed, clock=Clock("virtual"), options=options or {},
                           shutdown_timeout=0.5,  # a handler parked on the clock when the scenario ends
                           core={"database_url": f"sqlite+aiosqlite:///{folder / 'core.db'}",
                                 "api_keys": api_keys, **(core_settings or {})})
        self._admins = {}

    async def start(self) -> StackCoordinator:
        from caas_core.api.validation import operations

        await self.stack.start()
        operations()  # the core compiles its contract on its first request: part of starting it (once a process)
        self.session = aiohttp.ClientSession()
        return self

    def url(self, service: str) -> str:
        return self.stack.url(service)

    def services(self) -> list[str]:
        return list(self.stack.services)

    def now(self) -> float:
        return self.stack.clock.now()

    async def next_due(self) -> float | None:
        return await self.stack.next_due()

    async def advance_to(self, target: float) -> None:
        await self.stack.advance(max(0.0, target - self.now()))

    async def during(self, call: Awaitable[T]) -> T:
        return await self.stack.during(call)

    async def collection_cases(self) -> list[dict] | None:
        """Read from the database this world gave its core (not on the core's API yet): a
        connection of our own, read-only, beside the core's. ``None`` for an in-memory
        database, which only the core's own connection sees."""
        from caas_core.store import inspect
        from caas_core.store.db import Database, parse_url

        url = self.stack.core["database_url"]
        if parse_url(url).database in (None, "", ":memory:"):
            return None
        async with await Database.open(url, create=False) as db:
            return await inspect.collection_cases(db)

    async def close(self) -> None:
        await self.session.close()
        await self.stack.stop()


class RemoteCoordinator(_AdminMixin):
    """Services started elsewhere, by URL (``{"core": ..., "iot": ...}``)."""

    def __init__(self, urls: dict[str, str], *, token: str | None = None):
        self.urls = {name: url.rstrip("/") for name, url in urls.items()}
        self.token = token
        self._admins = {}
        self._now = 0.0
        self._cores: set[str] = set()  # the names whose health says ``service: core``
        self._no_hold: set[str] = set()  # services that do not know ``fire: false`` (admin 1.0)

    async def start(self) -> RemoteCoordinator:
        self.session = aiohttp.ClientSession()
        for name, url in self.urls.items():
            self._admins[name] = AdminClient(url, token=self.token, session=self.session, timeout=None)
        healths = await self._healths()
        self._cores = {name for name, h in zip(self._admins, healths) if h["service"] == "core"} | \
            ({"core"} & set(self.urls))
        self.started = self._now  # where the shared clock was when the run began
        return self

    async def reset(self) -> None:
        """A fresh world for the next scenario: state, rules and journals (clocks never go back)."""
        for name in self.urls:
            await self._admins[name].reset()
            if name != "core":
                await self._admins[name].clear_faults()
                await self._admins[name].clear_journal()
        await self._quiet()

    def url(self, service: str) -> str:
        return self.urls[service]

    def services(self) -> list[str]:
        return [name for name in self.urls if name != "core"]

    def now(self) -> float:
        return self._now

    async def _healths(self) -> list[dict]:
        healths = await asyncio.gather(*(admin.health() for admin in self._admins.values()))
        self._now = max(parse_datetime(h["clock"]["now"]) for h in healths)
        return healths

    async def _quiet(self) -> list[dict]:
        """Wait until nothing is busy anywhere, confirmed over a short real-time period."""
        calm, last = 0, None
        while True:
            healths = await self._healths()
            state = tuple((h["busy"], h.get("nextDue")) for h in healths)
            if all(h["busy"] == 0 for h in healths) and state == last:
                calm += 1
                if calm >= QUIET_POLLS:
                    return healths
            else:
                calm = 0
            last = state
            await asyncio.sleep(QUIET_INTERVAL)  # real time: other processes' bytes in flight

    async def next_due(self) -> float | None:
        # (one due before now was passed by a move that fires, and did not fire: time is
        # not what it waits on, and stepping to it again would fire nothing, forever)
        due = [parse_datetime(h["nextDue"]) for h in await self._quiet() if h.get("nextDue")]
        return min((d for d in due if d >= self._now), default=None)

    async def advance_to(self, target: float) -> None:
        previous = None
        while True:
            due = await self.next_due()
            step = target if due is None or due > target else max(due, self._now)
            if step == previous and step < target:
                # Still due after a move there: a timer within the millisecond after it, which
                # the protocol's instants (milliseconds) cannot name: move past it.
                step = min(step + MS, target)
            await self._move_all(step)
            previous, self._now = step, max(self._now, step)
            if step >= target:
                await self._quiet()
                return

    async def _move_all(self, step: float) -> None:
        """Every clock to ``step``, firing nothing, then each fires what is due there:
        simulators first, so that the core's jobs due at ``step`` meet peers that have
        done what was due then, as in one process (``Stack.advance``)."""
        instant = _instant(step)
        for name, admin in self._admins.items():
            if name not in self._no_hold:
                try:
                    await admin.set_clock(instant, fire=False)
                except AdminError as exc:
                    if exc.status == 400:  # a service of admin protocol 1.0: its plain move below
                        self._no_hold.add(name)
                    elif exc.status != 409:  # 409: already there (one process, one clock), fine
                        raise
        for name in sorted(self._admins, key=lambda name: name in self._cores):
            try:
                await self._admins[name].set_clock(instant)
            except AdminError as exc:
                if exc.status != 409:
                    raise

    async def during(self, call: Awaitable[T]) -> T:
        # Each process keeps its own clock: a call waiting on one ends at its real-time limit.
        return await call

    async def collection_cases(self) -> list[dict] | None:
        return None  # not on the core's API: only an in-process world can read them

    async def close(self) -> None:
        await self.session.close()


def _instant(ts: float) -> str:
    """``ts`` to the nearest millisecond, exactly (isoformat truncates: 0.433 may print as .432)."""
    ms = round(ts * 1000)
    return isoformat(ms // 1000).replace(".000Z", f".{ms % 1000:03d}Z")

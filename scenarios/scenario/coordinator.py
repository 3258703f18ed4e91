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

A core written by someone else may serve none of the admin routes. Without
``/__admin/health`` (busy, nextDue) and ``/__admin/clock`` it runs on its own
clock, real or scaled, which nobody can move: the ``RemoteCoordinator`` then
moves no clock either and lets the world's time run (``paced``), at the rate of
the simulators' clock (``caas-sim up --clock scaled:N`` or ``real``; the core
must keep the same rate): ``advance`` waits, ``until`` polls. A scenario that
may wait longer than ``max_wait`` real seconds at that rate needs virtual time
and is skipped (``runner.target_blockers``). Without ``/__admin/reset`` the core
keeps what a scenario leaves, so only the first scenario of a run plays on it,
unless ``core_command`` starts it afresh for each scenario; without
``/__admin/audit`` the core's audit is not checked (the peers' audit, from the
simulators' side, still is). Each of these is said once, through ``notify``,
when it is found (docs/bring-your-own-core.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp

from caas_sim.simulators.client import AdminClient, AdminError
from caas_sim.simulators.kit.clock import (
    MAX_TIME,
    Clock,
    ClockError,
    isoformat,
    parse_datetime,
)
from caas_sim.simulators.kit.durations import format_duration

T = TypeVar("T")

#: Real-time quiet period across processes: this many polls in a row with
#: nothing busy and nothing newly due, this far apart.
QUIET_POLLS = 3
QUIET_INTERVAL = 0.01
#: The admin protocol's time resolution (instants are ISO 8601 with milliseconds).
MS = 0.001
#: A paced world (a core on its own clock): how often, in real seconds, an ``until`` looks again.
PACE_POLL = 0.025
#: A paced world: the real seconds a scenario may wait at most (``--max-wait``).
DEFAULT_MAX_WAIT = 60.0
#: The optional admin routes of a core, and what the runner does without each.
CORE_ROUTES = ("health", "clock", "reset", "audit")
#: Answers that say a route is not there (not served, not this method, not implemented).
ABSENT = frozenset({404, 405, 501})


def absent(exc: AdminError) -> bool:
    """Whether an admin call failed because the service does not serve the route: a 404,
    405 or 501, or a 2xx that is not an admin answer (some catch-all page)."""
    return exc.status in ABSENT or 200 <= exc.status < 300


CLOCK_MODES = frozenset({"virtual", "scaled", "real"})


def _is_clock(answer: Any) -> bool:
    """Whether ``answer`` is the admin protocol's ``Clock`` as far as the coordinator reads it."""
    return isinstance(answer, dict) and answer.get("mode") in CLOCK_MODES and isinstance(answer.get("now"), str) \
        and (answer["mode"] != "scaled" or isinstance(answer.get("scale"), int | float))


def _not_admin(url: str, what: str) -> AdminError:
    """A 2xx JSON object that is not the admin answer (a catch-all route): ``absent`` for a core."""
    return AdminError(200, {"title": "Not an admin answer",
                            "detail": f"a JSON object without the admin protocol's {what}"}, url)


def clock_answer(answer: dict, url: str) -> dict:
    if not _is_clock(answer):
        raise _not_admin(url, "clock (mode, now)")
    return answer


def health_answer(answer: dict, url: str) -> dict:
    if not (isinstance(answer.get("service"), str) and isinstance(answer.get("busy"), int)
            and _is_clock(answer.get("clock"))):
        raise _not_admin(url, "health (service, clock, busy)")
    return answer


def print_notice(text: str) -> None:
    print(f"caas-sim: {text}", file=sys.stderr, flush=True)


class CoreCommandError(RuntimeError):
    """The command that starts the core (``core_command``) did not bring it up."""


#: How long a core started by ``core_command`` may take to listen, and to stop.
CORE_START_TIMEOUT = 30.0
CORE_STOP_TIMEOUT = 10.0
#: How long a core that refused a connection is given to be seen exiting.
CORE_EXIT_GRACE = 0.5


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
    async def core_exit(self) -> int | None: ...
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

    async def core_exit(self) -> int | None:
        return None  # the core runs in this process

    async def close(self) -> None:
        await self.session.close()
        await self.stack.stop()


class RemoteCoordinator(_AdminMixin):
    """Services started elsewhere, by URL (``{"core": ..., "iot": ...}``).

    ``core_lacks`` names the optional admin routes the core does not serve (``health``,
    ``clock`` at start; ``reset`` and ``audit`` once tried); ``rate`` is set when the
    world is paced (time runs by itself: virtual seconds per real second), ``None`` when
    the coordinator moves the clocks; ``unrunnable`` says why no scenario can run."""

    def __init__(self, urls: dict[str, str], *, token: str | None = None,
                 notify: Callable[[str], None] | None = None, max_wait: float = DEFAULT_MAX_WAIT,
                 core_command: str | None = None):
        self.urls = {name: url.rstrip("/") for name, url in urls.items()}
        self.token = token
        self.notify = notify or print_notice
        self.max_wait = max_wait
        self.core_command = core_command  # a shell command that starts the core: afresh for each scenario
        self._core_process: asyncio.subprocess.Process | None = None
        self._admins = {}
        self._now = 0.0
        self._cores: set[str] = set()  # the names whose health says ``service: core``
        self._no_hold: set[str] = set()  # services that do not know ``fire: false`` (admin 1.0)
        self.core_lacks: set[str] = set()
        self.rate: float | None = None
        self.clock_label = "virtual"  # the clock time runs on, for messages: virtual, scaled:N, real
        self.unrunnable: str | None = None
        self.played = 0  # scenarios played in this world (a core that cannot be reset holds their state)
        self._polled: list[str] = []  # the services whose health is read
        self._audit_probed = False
        self._read_at = 0.0  # paced: the real (monotonic) time of ``_now``, which runs on from there
        self._poll_step: float | None = None  # paced: the instant ``next_due`` gave an ``until`` to look again

    async def start(self) -> RemoteCoordinator:
        self.session = aiohttp.ClientSession()
        try:
            for name, url in self.urls.items():
                self._admins[name] = AdminClient(url, token=self.token, session=self.session, timeout=None)
            if self.core_command:
                await self._start_core()
            await self._probe()
            await self._align()
        except BaseException:
            await self.close()  # an unreachable service or a refusal: no session or core left behind
            raise
        self.started = self._now  # where the shared clock was when the run began
        return self

    async def _probe(self) -> None:
        """Read every service's health; find what the core serves and whether time can be moved."""
        async def health(name: str) -> dict | None:
            admin = self._admins[name]
            try:
                return health_answer(await admin.health(), admin.base_url + "/__admin/health")
            except AdminError as exc:
                if name == "core" and absent(exc):
                    return None
                raise

        names = list(self._admins)
        healths = dict(zip(names, await asyncio.gather(*(health(name) for name in names))))
        if "core" in healths:
            if healths["core"] is None:
                self.core_lacks.add("health")
            admin = self._admins["core"]
            try:
                clock_answer(await admin.clock(), admin.base_url + "/__admin/clock")
            except AdminError as exc:
                if not absent(exc):
                    raise
                self.core_lacks.add("clock")
        self._cores = {name for name, h in healths.items() if h and h["service"] == "core"} | \
            ({"core"} & set(self.urls))
        simulators = {name: h for name, h in healths.items() if h and name not in self._cores}
        real = sorted(name for name, h in healths.items() if h and h["clock"]["mode"] == "real")
        own_clock = bool({"health", "clock"} & self.core_lacks)
        if not own_clock and not real:
            self._polled = [name for name, h in healths.items() if h]
            await self._healths()
            return
        # Paced: time runs by itself, at the simulators' rate; the core must keep the same.
        self._polled = list(simulators)
        virtual = sorted(name for name, h in simulators.items() if h["clock"]["mode"] == "virtual")
        rates = [h["clock"]["scale"] if h["clock"]["mode"] == "scaled" else 1.0
                 for h in simulators.values() if h["clock"]["mode"] != "virtual"]
        self.rate = min(rates, default=1.0)
        self.clock_label = "real time" if self.rate == 1.0 and not any(
            h["clock"]["mode"] == "scaled" for h in simulators.values()) else f"scaled:{self.rate:g}"
        core = self.urls.get("core", "?")
        if own_clock:
            missing = ("neither /__admin/health nor /__admin/clock" if {"health", "clock"} <= self.core_lacks
                       else f"no /__admin/{'health' if 'health' in self.core_lacks else 'clock'}")
            why = f"the core at {core} has {missing}: it runs on its own clock"
        else:
            why = f"the clock of {', '.join(real)} is real: it cannot be moved"
        if virtual:
            self.unrunnable = (f"{why}, and the simulators' clock ({', '.join(virtual)}) is virtual: it moves only "
                               f"when told. Start them with `caas-sim up --clock scaled:N` (the core at the same "
                               f"rate) or `--clock real`")
            self.notify(f"{self.unrunnable}; every scenario is skipped")
        else:
            self.notify(f"{why}; time runs at the simulators' rate ({self.clock_label}), which the core must keep "
                        f"too, and the scenarios that need virtual time (more than --max-wait {self.max_wait:g} s of "
                        f"real waiting) are skipped")
        if self._polled:
            await self._healths()
        else:
            self._read_at = time.monotonic()  # no simulator to read the time from: it starts here

    def wait_blocker(self, seconds: float) -> str | None:
        """Why a scenario that may let ``seconds`` of world time pass cannot run here, if it cannot."""
        if self.unrunnable:
            return "time cannot pass in this world: the simulators' clock is virtual and the core's cannot be moved"
        if self.rate is None or seconds / self.rate <= self.max_wait:
            return None
        real = seconds / self.rate
        return (f"it needs virtual time: it may wait {format_duration(seconds)}, "
                f"{format_duration(real) if real < 86400 else f'{real / 86400:.0f} days'} of real time at "
                f"{self.clock_label} (more than --max-wait {self.max_wait:g} s)")

    def _lack(self, route: str, consequence: str) -> None:
        if route not in self.core_lacks:
            self.core_lacks.add(route)
            self.notify(f"the core at {self.urls['core']} has no /__admin/{route}: {consequence}")

    async def serves_audit(self) -> bool:
        """Whether the core serves ``GET /__admin/audit`` (asked once, then known)."""
        if not self._audit_probed and "core" in self._admins:
            self._audit_probed = True
            try:
                await self._admins["core"].audit()
            except AdminError as exc:
                if not absent(exc):
                    raise
                self._lack("audit", "its audit is skipped (reported as not checked); the peers' audit "
                                    "(`audit: {peers: true}`, from the simulators' side) still runs")
        return "audit" not in self.core_lacks

    async def reset(self) -> None:
        """A fresh world for the next scenario: state, rules and journals (clocks never go back).
        As the pytest plugin does it: the simulators first (a reset drops the requests one
        still held), the core once they are quiet, then the simulators' journals, emptied of
        what the core did meanwhile about the old world."""
        if self.core_command and self.played:
            await self._start_core()  # afresh: nothing of the scenario before in it
        simulators = [name for name in self.urls if name != "core"]
        for name in simulators:
            await self._admins[name].reset()
            await self._admins[name].clear_faults()
        if "core" in self.urls and "reset" not in self.core_lacks and not self.core_command:
            await self._quiet()
            try:
                await self._admins["core"].reset()
            except AdminError as exc:
                if not absent(exc):
                    raise
                self._lack("reset", "it keeps what a scenario leaves, so only the first scenario of a run plays on "
                                    "it and the others are skipped (--core-command starts it afresh for each)")
        for name in simulators:
            await self._admins[name].clear_journal()
        await self._align(await self._quiet())  # a core just restarted (--core-command) is back at its start

    async def _align(self, healths: list[dict] | None = None) -> None:
        """Every clock to the world's now (the latest; ``healths``: the polled services' just
        read, read here otherwise), when time does not run by itself: one
        behind (a core started on a virtual clock begins at its start, days before a world that
        moved on) would stay there until the first move, which would fire its timers at once
        (an OTA attempt's 60 s running out with its callback)."""
        if self.rate is not None:
            return
        healths = await self._healths() if healths is None else healths
        behind = [name for name, h in zip(self._polled, healths, strict=True)
                  if parse_datetime(h["clock"]["now"]) < self._now]
        instant = _instant(self._now)
        for name in sorted(behind, key=lambda name: name in self._cores):  # as _move_all: simulators first
            try:
                await self._admins[name].set_clock(instant)
            except AdminError as exc:
                raise _cannot_move(name, instant, exc) from None
        if behind:
            await self._quiet()

    async def _start_core(self) -> None:
        """(Re)start the core with ``core_command`` and wait until its URL takes connections."""
        await self._stop_core()
        url = urlsplit(self.urls["core"])
        host, port = url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)
        # its own session (process group): stopping it stops what the shell started too
        self._core_process = process = await asyncio.create_subprocess_shell(
            self.core_command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + CORE_START_TIMEOUT
        while True:
            if process.returncode is not None:
                raise CoreCommandError(f"the core command exited with code {process.returncode} before the core "
                                       f"listened on {self.urls['core']}: {self.core_command}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(host, port)
                writer.close()
                return
            if time.monotonic() > deadline:
                raise CoreCommandError(f"the core command did not listen on {self.urls['core']} within "
                                       f"{CORE_START_TIMEOUT:g} s: {self.core_command}")
            await asyncio.sleep(0.02)  # polling the port of a process starting up

    async def core_exit(self) -> int | None:
        """The exit code of the core ``core_command`` started, once it has exited (None: it
        runs, or this coordinator did not start it)."""
        process = self._core_process
        if process is None:
            return None
        with contextlib.suppress(TimeoutError):  # its exit may not have been reaped yet
            await asyncio.wait_for(process.wait(), CORE_EXIT_GRACE)
        return process.returncode

    async def _stop_core(self) -> None:
        process, self._core_process = self._core_process, None
        if process is None or process.returncode is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(process.wait(), CORE_STOP_TIMEOUT)
                return
            except TimeoutError:
                continue

    def url(self, service: str) -> str:
        return self.urls[service]

    def services(self) -> list[str]:
        return [name for name in self.urls if name != "core"]

    def now(self) -> float:
        if self.rate is None:
            return self._now
        return self._now + (time.monotonic() - self._read_at) * self.rate  # paced: time runs on by itself

    async def _healths(self) -> list[dict]:
        admins = [self._admins[name] for name in self._polled]
        healths = await asyncio.gather(*(admin.health() for admin in admins))
        if healths:
            latest = max(parse_datetime(h["clock"]["now"]) for h in healths)
            if self.rate is None:
                self._now = latest
            else:
                self._now = max(self.now(), latest) if self._read_at else latest
                self._read_at = time.monotonic()
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
        if self.rate is not None:  # paced: time runs by itself; look again a moment later
            self._poll_step = self.now() + PACE_POLL * self.rate
            return self._poll_step
        # (one due before now was passed by a move that fires, and did not fire: time is
        # not what it waits on, and stepping to it again would fire nothing, forever)
        due = [parse_datetime(h["nextDue"]) for h in await self._quiet() if h.get("nextDue")]
        return min((d for d in due if d >= self._now), default=None)

    async def advance_to(self, target: float) -> None:
        if target > MAX_TIME:  # each service would refuse it (409): said once, for the world
            raise ClockError(f"cannot move the clock past {isoformat(MAX_TIME)}")
        if self.rate is not None:
            await self._wait_until(target)
            return
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

    async def _wait_until(self, target: float) -> None:
        """Paced: let the world's clock reach ``target`` (real time at its rate); then, unless
        this was an ``until`` looking again (``next_due``), let what is in flight settle."""
        polling, self._poll_step = target == self._poll_step, None
        await asyncio.sleep(max(0.0, (target - self.now()) / self.rate))
        if not polling:
            await self._quiet()

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
                    if exc.status != 400:  # 400: a service of admin protocol 1.0: its plain move below
                        raise _cannot_move(name, instant, exc) from None
                    self._no_hold.add(name)
        for name in sorted(self._admins, key=lambda name: name in self._cores):
            try:
                await self._admins[name].set_clock(instant)
            except AdminError as exc:
                raise _cannot_move(name, instant, exc) from None

    async def during(self, call: Awaitable[T]) -> T:
        # Each process keeps its own clock: a call waiting on one ends at its real-time limit.
        return await call

    async def collection_cases(self) -> list[dict] | None:
        return None  # not on the core's API: only an in-process world can read them

    async def close(self) -> None:
        try:
            await self.session.close()
        finally:
            await self._stop_core()


def _cannot_move(name: str, instant: str, exc: AdminError) -> Exception:
    """A 409 is a clock that will not go there: ahead of the world (another run moving the
    same services?) or running in real time. Going on would run the scenario on clocks that
    disagree, so it ends here, saying which."""
    if exc.status != 409:
        return exc
    return ClockError(f"{name}'s clock cannot move to {instant}: {exc.problem.get('detail') or exc.title}")


def _instant(ts: float) -> str:
    """``ts`` to the nearest millisecond, exactly (isoformat truncates: 0.433 may print as .432)."""
    ms = round(ts * 1000)
    return isoformat(ms // 1000).replace(".000Z", f".{ms % 1000:03d}Z")

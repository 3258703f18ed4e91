"""The dashboard's view of the world, kept up to date by polling the admin protocol, and
fanned out to every browser as server-sent events.

While at least one browser listens, every ``interval`` real seconds the hub reads each
service's ``GET /__admin/health`` and ``GET /__admin/journal?since=N`` (from where it last
stopped), and every few rounds its ``GET /__admin/faults``. New journal entries get a
dashboard id (the SSE ``id``, so a reconnecting ``EventSource`` resumes with
``Last-Event-ID``) and go out as ``journal`` events; health and fault rules go out as
``health`` and ``faults`` events when they change. A service that does not serve a route
(a core has no journal or faults; a foreign core may have no health) is asked once and
then left alone for that route. Nobody listening: nothing is polled.

The polling is real time (a browser's refresh), not domain time: the services' clocks
move only when the dashboard, a scenario or ``caas-sim clock advance`` moves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections import deque
from typing import Any

import aiohttp
import orjson

from caas_sim.simulators.client import AdminClient, AdminError, AdminUnreachable

from ..scenario.coordinator import absent
from . import rows

log = logging.getLogger("caas.dashboard")

#: Real seconds between two polls of the world while a browser listens.
POLL_INTERVAL = 0.25
#: Fault rules are read every this many polls (they change rarely; hits show in the journal).
FAULTS_EVERY = 4
#: Journal entries the hub keeps for a browser that connects (the diagram shows the latest).
BACKLOG = 2000
#: Entries per journal read (the contract's maximum is 10000).
PAGE = 1000
#: Messages a slow browser may fall behind before it is dropped (it reconnects and resumes).
QUEUE = 256
#: Real seconds without a message before a comment keeps the connection open.
KEEPALIVE = 15.0


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One server-sent event (``data`` as one line of JSON)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


class Hub:
    """Polls ``services`` (name -> base URL, the core's under ``core``) through the admin
    protocol; ``lanes`` adds names for other URLs webhooks may go to (a sink)."""

    def __init__(self, services: dict[str, str], *, token: str | None = None, interval: float = POLL_INTERVAL,
                 lanes: dict[str, str] | None = None, backlog: int = BACKLOG):
        self.services = {name: url.rstrip("/") for name, url in services.items()}
        self.token = token
        self.interval = interval
        self.lanes = {**self.services, **(lanes or {})}
        self.entries: deque[dict] = deque(maxlen=backlog)
        self.health: dict[str, dict] = {}
        self.faults: dict[str, dict] = {}
        self.notices: deque[str] = deque(maxlen=50)
        self.absent: dict[str, set[str]] = {name: set() for name in self.services}  # routes not served
        self._since = dict.fromkeys(self.services, 0)
        self._ids = itertools.count(1)
        #: Which hub's ids these are: a page that saw another's (the dashboard restarted) starts afresh.
        self.epoch = secrets.token_hex(4)
        self._last_id = 0
        self._subscribers: set[asyncio.Queue] = set()
        self._task: asyncio.Task | None = None
        self._polls = 0
        self._wake = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None
        self._admins: dict[str, AdminClient] = {}
        self.closed = False

    # --- life --------------------------------------------------------------------------
    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        self._admins = {name: AdminClient(url, token=self.token, session=self.session, timeout=10)
                        for name, url in self.services.items()}

    async def close(self) -> None:
        self.closed = True
        for queue in list(self._subscribers):
            _offer(queue, None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.session is not None:
            await self.session.close()

    def admin(self, name: str) -> AdminClient:
        return self._admins[name]

    # --- browsers ------------------------------------------------------------------------
    def subscribe(self, last_id: int | None = None) -> asyncio.Queue:
        """A queue of SSE messages: the state now, the backlog (after ``last_id`` when the
        browser resumes, else all of it), then whatever comes; ``None`` ends it."""
        queue: asyncio.Queue = asyncio.Queue(QUEUE)
        if last_id is not None and last_id > self._last_id:
            last_id = None  # an id of another hub's (the dashboard restarted): everything
        queue.put_nowait(sse("hello", self._hello()))
        if self.health:
            queue.put_nowait(sse("health", self.health))
        if self.faults:
            queue.put_nowait(sse("faults", self._rules()))
        backlog = [e for e in self.entries if last_id is None or e["id"] > last_id]
        for start in range(0, len(backlog), 200):
            chunk = backlog[start:start + 200]
            queue.put_nowait(sse("journal", chunk, chunk[-1]["id"]))
        self._subscribers.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dashboard-poll")
        self._wake.set()
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._subscribers.discard(queue)

    @property
    def listening(self) -> int:
        return len(self._subscribers)

    def _broadcast(self, message: bytes) -> None:
        for queue in list(self._subscribers):
            if not _offer(queue, message):
                self._subscribers.discard(queue)  # too far behind: it reconnects and resumes
                _offer(queue, None, force=True)

    def notice(self, text: str) -> None:
        """Say something to every browser (once), e.g. a foreign core's missing route."""
        self.notices.append(text)
        self._broadcast(sse("notice", {"text": text}))

    # --- polling -------------------------------------------------------------------------
    async def _run(self) -> None:
        while self._subscribers and not self.closed:
            try:
                await self.poll()
            except Exception:  # a poll must never end the loop: the next one tries again
                log.exception("dashboard poll failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    def refresh(self) -> None:
        """Poll again now rather than at the next tick (after the dashboard changed something)."""
        self._polls = -1  # the next poll reads the fault rules too
        self._wake.set()

    async def poll(self) -> None:
        """One round: health and new journal entries of every service, fault rules every
        ``FAULTS_EVERY`` rounds; broadcast what changed."""
        with_faults = self._polls % FAULTS_EVERY == 0 or self._polls < 0
        self._polls = max(self._polls, 0) + 1
        names = list(self.services)
        _, journals = await asyncio.gather(self.read_health(), asyncio.gather(*(self._journal(n) for n in names)))
        fresh = [e for batch in journals for e in batch]
        if fresh:
            fresh.sort(key=lambda e: (e["vt"], e.get("wall", ""), e.get("service", ""), e.get("seq", 0)))
            for entry in fresh:
                entry["id"] = self._last_id = next(self._ids)
                self.entries.append(entry)
            for start in range(0, len(fresh), 200):
                chunk = fresh[start:start + 200]
                self._broadcast(sse("journal", chunk, chunk[-1]["id"]))
        if with_faults:
            await self.read_faults()

    async def read_health(self) -> dict[str, dict]:
        """Every service's health now (``{"health": ...}``, ``{"absent": true}`` or
        ``{"error": ...}``); broadcast when it changed."""
        names = list(self.services)
        health = dict(zip(names, await asyncio.gather(*(self._health(n) for n in names))))
        if health != self.health:
            self.health = health
            self._broadcast(sse("health", health))
        return health

    async def read_faults(self) -> dict[str, dict]:
        """Every service's fault rules and actions (``{"absent": true}`` where not served);
        broadcasts the rules when they changed."""
        names = list(self.services)
        listed = dict(zip(names, await asyncio.gather(*(self._faults(n) for n in names))))
        before = self._rules()
        self.faults = listed
        if self._rules() != before:
            self._broadcast(sse("faults", self._rules()))
        return listed

    def _rules(self) -> dict[str, Any]:
        return {name: ({"rules": f["rules"]} if "rules" in f else {k: v for k, v in f.items() if k != "actions"})
                for name, f in self.faults.items()}

    def _hello(self) -> dict[str, Any]:
        return {"services": self.services, "absent": self._absent_json(), "epoch": self.epoch}

    def _absent_json(self) -> dict[str, list[str]]:
        return {name: sorted(routes) for name, routes in self.absent.items() if routes}

    def _lack(self, name: str, route: str) -> None:
        if route not in self.absent[name]:
            self.absent[name].add(route)
            self._broadcast(sse("hello", self._hello()))

    async def _health(self, name: str) -> dict:
        if "health" in self.absent[name]:
            return {"absent": True}
        try:
            return {"health": await self._admins[name].health()}
        except AdminUnreachable as exc:
            return {"error": f"unreachable: {exc.reason}"}
        except AdminError as exc:
            if absent(exc):
                self._lack(name, "health")
                self.notice(f"{name} serves no /__admin/health: its clock and busy state are not shown, and its "
                            f"clock is its own (the dashboard does not move it)")
                return {"absent": True}
            return {"error": str(exc)}

    async def _journal(self, name: str) -> list[dict]:
        if "journal" in self.absent[name]:
            return []
        out: list[dict] = []
        try:
            while True:
                page = await self._admins[name].journal(self._since[name], PAGE)
                if page["next"] < self._since[name]:  # the service started afresh: read it from the start
                    self._since[name] = 0
                    continue
                if page["dropped"]:
                    self.notice(f"{page['dropped']} journal entries of {name} were evicted before the dashboard "
                                f"read them")
                out += [rows.with_row(e, self.lanes) for e in page["entries"]]
                self._since[name] = page["next"]
                if len(page["entries"]) < PAGE:
                    return out
        except AdminUnreachable:
            return out  # health says so
        except AdminError as exc:
            if absent(exc):
                self._lack(name, "journal")  # a core keeps no journal: its peers' journals show what it did
            return out

    async def _faults(self, name: str) -> dict:
        if "faults" in self.absent[name]:
            return {"absent": True}
        try:
            return await self._admins[name].faults()
        except AdminUnreachable as exc:
            return {"error": f"unreachable: {exc.reason}"}
        except AdminError as exc:
            if absent(exc):
                self._lack(name, "faults")
                return {"absent": True}
            return {"error": str(exc)}


def _offer(queue: asyncio.Queue, message: bytes | None, *, force: bool = False) -> bool:
    try:
        queue.put_nowait(message)
        return True
    except asyncio.QueueFull:
        if force:  # make room for the end
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            queue.put_nowait(message)
        return False

"""The stack: any set of services in one process, on one clock.

Services are started on real sockets (ephemeral ports by default) so that
everything between them is real HTTP; they share one ``Clock`` so that
``advance`` moves the whole world event by event, settling in between.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import math
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from aiohttp import web

from caas_sim import catalogue, logs
from caas_sim.simulators.kit.app import SERVICE_KEY
from caas_sim.simulators.kit.clock import Clock
from caas_sim.simulators.kit.config import SimConfig
from caas_sim.simulators.kit.durations import parse_duration
from caas_sim.simulators.kit.service import Service
from caas_sim.simulators.kit.webhooks import DEFAULT_SECRET

from .sink import WebhookSink

T = TypeVar("T")

#: name -> (module with create_app, default port): the service catalogue's rows.
SERVICES: dict[str, tuple[str, int]] = {e.name: (e.module, e.port) for e in catalogue.SERVICES}


def available_services() -> list[str]:
    """The services whose module exists in this checkout."""
    return [name for name, (module, _) in SERVICES.items() if _importable(module)]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its package is missing
        return False


SINK_PORT = catalogue.SINK_PORT
#: Where the core receives each simulator's webhooks (contracts/core.yaml).
CORE_WEBHOOK_PATHS = catalogue.WEBHOOK_SENDERS


def parse_clock(spec: str) -> Clock:
    """``real`` | ``virtual`` | ``scaled:N`` (N virtual seconds per real second)."""
    mode, _, scale = spec.partition(":")
    if mode == "scaled":
        try:
            factor = float(scale or 60)
            if not math.isfinite(factor):  # nan and inf: Clock would divide by them
                raise ValueError
            return Clock("scaled", scale=factor)
        except ValueError:
            raise ValueError(f"bad clock {spec!r}: scaled:N wants a positive number, e.g. scaled:60") from None
    if scale:
        raise ValueError(f"bad clock {spec!r}: only scaled takes a factor (scaled:N)")
    return Clock(mode)


@dataclass
class Running:
    name: str
    app: web.Application
    runner: web.AppRunner
    url: str


@dataclass
class Stack:
    services: list[str] = field(default_factory=available_services)
    seed: int = 0
    clock: Clock = field(default_factory=Clock)
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)  # 0 or absent: ephemeral
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    fault_profiles: dict[str, str] = field(default_factory=dict)
    with_sink: bool = True  # a webhook receiver standing in for the core
    #: The reference core too, wired to these simulators (its webhooks replace the sink's);
    #: settings overrides as CoreSettings fields, e.g. {"database_url": ..., "api_keys": {...}}.
    core: dict[str, Any] | None = None
    admin_token: str | None = None
    #: Where a simulator's webhooks go instead of the sink or the core: name -> URL.
    webhook_urls: dict[str, str] = field(default_factory=dict)
    #: The ``whsec_`` secret a simulator signs its webhooks with: name -> secret, ``*`` for
    #: all; the development secret otherwise. The sink and the core verify with the same.
    webhook_secrets: dict[str, str] = field(default_factory=dict)
    #: Real seconds a stop waits for handlers still running (e.g. parked on a clock that
    #: will not move again): aiohttp's 60 s default is for real servers, not throwaway worlds.
    shutdown_timeout: float = 60.0
    #: One line per request on the ``caas.access`` logger (``caas-sim up --access-log``).
    access_log: bool = False
    #: Webhook-ids unique to this run, not only to the seed: for simulators that talk to a core
    #: this stack did not start afresh (``up``, ``serve``, a load's, the pytest plugin's with a
    #: core of your own), which would drop an id it saw from an earlier run as a duplicate.
    unique_webhook_ids: bool = False
    running: dict[str, Running] = field(default_factory=dict)
    sink: WebhookSink | None = None
    #: The service a start was at when it failed (``None`` once every one started): a failed
    #: start stops what did start, so ``running`` no longer tells.
    starting: str | None = field(default=None, init=False)

    async def start(self) -> Stack:
        unknown = [s for s in self.services if s not in SERVICES]
        if unknown:
            raise ValueError(f"unknown service(s) {unknown}; available: {', '.join(SERVICES)}")
        try:
            await self._start_all()
        except BaseException:
            await self.stop()  # leave no socket bound behind a failed start
            raise
        self.starting = None
        return self

    async def _start_all(self) -> None:
        if self.with_sink:
            self.starting = "sink"
            self.sink = WebhookSink(self.clock, secrets={n: self.webhook_secret(n) for n in self.services})
            await self._serve("sink", self.sink.app(), self.ports.get("sink", 0))
        for name in self.services:
            self.starting = name  # its fault profile is loaded (and may be refused) before it listens
            module = importlib.import_module(SERVICES[name][0])
            config = SimConfig(seed=self.seed, clock=self.clock, admin_token=self.admin_token,
                               options=self.options.get(name, {}), fault_profile=self.fault_profiles.get(name),
                               webhook_url=self.webhook_urls.get(name) or (
                                   f"{self.running['sink'].url}/webhooks/{name}" if self.sink else None),
                               webhook_secret=self.webhook_secret(name), unique_webhook_ids=self.unique_webhook_ids)
            await self._serve(name, module.create_app(config), self.ports.get(name, 0))
        if self.core is not None:
            self.starting = "core"
            await self._start_core()

    async def _start_core(self) -> None:
        # Imported here: a stack of simulators alone needs nothing of the core.
        from caas_core.api.app import create_app as create_core
        from caas_core.clock import CoreClock
        from caas_core.settings import CoreSettings

        upstreams = {name.replace("-", "_"): self.url(name) for name in self.services}
        # A world on a virtual clock owns its database: SQLite runs on the loop's thread
        # (a thread hop per statement was most of a journey's time); and its ids come from
        # the seed, so that one seed gives one report (store.ids: never the same id twice).
        virtual = self.clock.mode == "virtual"
        secrets = {name: self.webhook_secret(name) for name in self.services if name in CORE_WEBHOOK_PATHS}
        settings = CoreSettings(**{"seed": self.seed, "upstreams": upstreams, "sqlite_inline": virtual,
                                   "webhook_secrets": secrets,
                                   **({"id_seed": self.seed} if virtual else {}), **self.core})
        clock = CoreClock("virtual" if self.clock.mode == "virtual" else "scaled", scale=self.clock.scale,
                          start=self.clock.now())
        await self._serve("core", create_core(settings, clock=clock), self.ports.get("core", 0))
        for name in self.services:  # the simulators now call back the core, not the sink
            path = CORE_WEBHOOK_PATHS.get(name)
            if path:
                self.service(name).webhooks.subscribe("*", self.webhook_urls.get(name) or self.url("core") + path,
                                                      self.webhook_secret(name))

    async def _serve(self, name: str, app: web.Application, port: int) -> None:
        access = logging.getLogger(logs.ACCESS_LOGGER) if self.access_log else None
        runner = web.AppRunner(app, access_log=access, access_log_format=logs.ACCESS_FORMAT,
                               shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port)
        await site.start()
        bound = runner.addresses[0][1]  # its one site's (host, port)
        # A wildcard bind is reached through loopback from here.
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(self.host, self.host)
        self.running[name] = Running(name, app, runner, f"http://{host}:{bound}")

    async def stop(self) -> None:
        for running in reversed(list(self.running.values())):
            await running.runner.cleanup()
        self.running.clear()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def webhook_secret(self, name: str) -> str:
        return self.webhook_secrets.get(name) or self.webhook_secrets.get("*") or DEFAULT_SECRET

    def url(self, name: str) -> str:
        return self.running[name].url

    def service(self, name: str) -> Service:
        return self.running[name].app[SERVICE_KEY]

    def _core(self):
        from caas_core.api.app import CORE_KEY, RUNNER_KEY

        app = self.running["core"].app
        return app[CORE_KEY], app[RUNNER_KEY]

    async def next_due(self) -> float | None:
        """When something in the world is next due: a simulator's timer, a core job, or the
        deadline of a call the core is waiting on."""
        due = [self.clock.next_due()]
        if "core" in self.running:
            core, runner = self._core()
            due += [core.clock.next_due(), await runner.next_due()]
        return min((d for d in due if d is not None), default=None)

    async def advance(self, duration: str | float) -> int:
        """Move every clock forward event by event; returns the number of events fired."""
        target = self.clock.now() + parse_duration(duration)
        if "core" not in self.running:
            return await self.clock.advance_to(target)
        # The core keeps its timers as durable jobs: step both clocks to whichever is due first.
        core, runner = self._core()
        ran, fired = runner.ran, 0
        while True:
            due = [d for d in (self.clock.next_due(), await self._settle_with_core(core, runner)) if d is not None]
            if not due or min(due) > target:
                break
            fired += await self._step(core, max(min(due), self.clock.now()))
        fired += await self._step(core, target)
        await self._settle_with_core(core, runner)
        return fired + runner.ran - ran

    async def _step(self, core, step: float) -> int:
        """Both clocks to ``step``, then what is due there: the core's clock moves first but
        keeps what falls due (a webhook the simulators send at ``step`` then reaches a core
        that is there, not one step behind); the simulators' events fire; then the deadlines
        of the core's calls pass, and its jobs run as the world settles."""
        if step > core.clock.now():
            core.clock.move_to(step, expire=False)
        fired = await self.clock.advance_to(step)
        core.clock.expire_passed()
        return fired

    async def _settle_with_core(self, core, runner) -> float | None:
        """Let the core work until nothing moves without the clock: no simulator or core
        handler at work, no job due that could run. Returns when the core next needs the
        clock: its next job, or the deadline of an upstream call it is waiting on.

        Jobs run in the core's own serving task (kicked), so that one waiting on a peer
        whose answer waits on the clock (injected latency) holds nothing here: it is parked,
        as the clock's ``parked`` count says. Whether a job is due costs one read (none on a
        private database that did not change), where a claim that finds nothing was a
        write transaction."""
        while True:
            await self.clock.settle()
            if self.clock.busy or self._core_at_work(core, runner):
                continue
            if not runner.passing and await runner.has_due():
                if runner.serving:
                    runner.kick()
                else:
                    await runner.run_due()
                continue
            # (a pass parked on a peer runs what falls due once its call returns)
            jobs_due = None if runner.passing else await runner.next_due()
            if self.clock.busy or self._core_at_work(core, runner):
                continue  # something started while the queue was read
            return min((d for d in (core.clock.next_due(), jobs_due) if d is not None), default=None)

    def _core_at_work(self, core, runner) -> bool:
        """A request or a pass over the queue is at work, not parked on a peer's answer. A
        call counts as parked only as far as simulators hold answers on the clock: before
        its peer holds it, its request may still be on the way to a peer not yet busy."""
        return core.in_flight + runner.busy > min(core.clock.parked, self.clock.held)

    async def during(self, call: Awaitable[T]) -> T:
        """``call``'s result (a request into the world), moving the clocks whenever the
        world waits on them meanwhile: a handler whose peer answers later on the clock, or
        gives up at a deadline on it, answers when the clock gets there."""
        task = asyncio.ensure_future(call)
        while True:
            if "core" in self.running:
                due = [await self._settle_with_core(*self._core())]
            else:
                await self.clock.settle()
                due = []
            if task.done():
                return task.result()
            if not self.clock.held:  # on its way, or being answered: nothing waits on the clock
                continue
            due = [d for d in (*due, self.clock.next_due()) if d is not None]
            if not due:  # nothing on the clock will answer it: it ends on its own
                return await task
            await self.advance(max(0.0, min(due) - self.clock.now()))

    async def settle(self) -> None:
        await self.clock.settle()

    def journal(self) -> list[dict]:
        """Every service's journal, in virtual-time then sequence order."""
        entries = [e for name in self.services for e in self.service(name).journal.entries()]
        return sorted(entries, key=lambda e: (e["vt"], e["service"], e["seq"]))

    def violations(self) -> list[dict]:
        return [e for e in self.journal() if e["kind"] == "violation"]

"""The ``caas_world`` pytest fixture: a team's own tests against the simulators.

Installed with caas-sim, the plugin loads itself (the ``pytest11`` entry point ``caas_sim``);
from a checkout, enable it with ``-p caas_sim.scenarios.pytest_plugin`` or ``pytest_plugins``.
``caas_world`` is synchronous and works the same under pytest-asyncio (strict or auto mode)
and pytest-xdist (each worker its own world)::

    def test_a_purchase_is_delivered(caas_world):
        core = caas_world.url("core")                     # the reference core, with API keys
        ...                                               # buy, over HTTP, as "dev-customer"
        caas_world.fault("iot", {"action": {"type": "vehicle_offline"}, "times": 1})
        caas_world.advance("15m")                         # the whole world, event by event
        assert any(e.operation == "activateService" for e in caas_world.journal("iot"))

The world: every simulator of the catalogue and the reference core (on a throwaway SQLite
file), on one virtual clock, on ephemeral ports, served by an event loop in a thread of
its own. It starts once per session (per xdist worker) when a test first asks for it, and
is reset before each test that uses it: the simulators through the admin protocol
(state, faults, journals, webhook subscriptions) and the core's database through its
``/__admin/reset``. The clock never goes back: each test starts where the last one ended.

``--caas-core-url URL`` (or the ini option ``caas_core_url``) points the world at a core of
your own instead of the reference one: the simulators then send their webhooks to URL plus
the receiver paths of the catalogue (``/caas/webhooks/ota-status``...), signed with
``caas_world.webhook_secrets``, and listen on the catalogue's ports (8101...; your core's
upstreams) or ``--caas-port-base``'s. A core that speaks the admin protocol on a virtual or
scaled clock moves with the world and is reset with it; one that does not is told once and
keeps its own time.

Configuration: the options below, or override the session fixture ``caas_world_config``
in a conftest (``return caas_world_config.replace(api_keys={...})``; see ``WorldConfig``).
Everything the fixture does to the services goes through HTTP (their APIs and
contracts/admin.yaml), as a test of a core written by anyone would.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import warnings
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from caas_sim import catalogue

if TYPE_CHECKING:  # the world's machinery is imported when a test first asks for it
    from caas_sim.scenarios.scenario.coordinator import RemoteCoordinator
    from caas_sim.scenarios.stack import Stack
    from caas_sim.simulators.admin_models import (
        AuditReport,
        FaultRule,
        FaultRuleInput,
        JournalEntry,
    )
    from caas_sim.simulators.typed_client import Admin

T = TypeVar("T")

#: The entry point's name (``pyproject.toml``: ``[project.entry-points.pytest11]``).
ENTRY_POINT = "caas_sim"
#: The reference core's API keys unless configured: the same as `caas-sim up`'s.
DEFAULT_API_KEYS: dict[str, dict[str, str]] = {
    "dev-operator": {"role": "operator", "subject": "operator"},
    "dev-customer": {"role": "customer", "subject": "c-1"},
    "dev-dealership": {"role": "dealership", "subject": "ES-MAD-001"},
}
#: The environment variable with the admin token of a core of your own (as for `caas-sim`).
TOKEN_ENV = "CAAS_SIM_ADMIN_TOKEN"
#: Real seconds to start or stop the world.
START_TIMEOUT = 120.0


class CaasWorldError(Exception):
    """The world cannot do what a test asked (your core unreachable, a bad option...)."""


class CaasWorldWarning(UserWarning):
    """The world works in a reduced way, said once (a core of your own without the admin protocol)."""


@dataclass(frozen=True)
class WorldConfig:
    """What world ``caas_world`` starts. From the options by default; override the session
    fixture ``caas_world_config`` to change the rest."""

    #: Seeds every simulator (fleets, magic VINs, RNGs) and the reference core's ids.
    seed: int = 0
    #: A core of your own: no reference core is started (``--caas-core-url``).
    core_url: str | None = None
    #: The reference core's API keys: key -> {role: customer | dealership | operator, subject}.
    api_keys: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: dict(DEFAULT_API_KEYS))
    #: The ``whsec_`` secret each simulator signs its webhooks with: service -> secret, ``*``
    #: for all; the development secret (public, the reference core's default) otherwise.
    webhook_secrets: Mapping[str, str] = field(default_factory=dict)
    #: More settings of the reference core (``CoreSettings`` fields, e.g. ``{"ota": {"attempts": 5}}``).
    core_settings: Mapping[str, Any] = field(default_factory=dict)
    #: Per-simulator options (``SimConfig.options``): service -> {option: value}.
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: The simulators to start; empty: every one of the catalogue.
    services: tuple[str, ...] = ()
    #: With a core of your own: the simulators listen on this base plus their usual offset
    #: (8000: the catalogue's ports, 8101...; 0: ephemeral ones). Ephemeral with the reference core.
    port_base: int | None = None
    #: The admin token of a core of your own (``$CAAS_SIM_ADMIN_TOKEN`` by default).
    admin_token: str | None = None

    def replace(self, **changes: Any) -> WorldConfig:
        return replace(self, **changes)

    @classmethod
    def from_pytest(cls, config: pytest.Config) -> WorldConfig:
        core_url = _option(config, "caas_core_url")
        seed = _option(config, "caas_seed")
        port_base = _option(config, "caas_port_base")
        try:
            world = cls(seed=int(seed) if seed not in (None, "") else 0,
                        core_url=str(core_url).rstrip("/") if core_url else None,
                        port_base=int(port_base) if port_base not in (None, "") else None,
                        admin_token=os.environ.get(TOKEN_ENV) or None)
        except ValueError as exc:
            raise pytest.UsageError(f"caas_world: {exc}") from None
        _check_core_url(world.core_url)
        _check_port_base(world.port_base)
        return world


def _check_core_url(url: str | None) -> None:
    """As `caas-sim up --core-url`: an http(s) URL with a host, said before any world starts."""
    if url is None:
        return
    # here: with a core of your own, the world it starts imports it anyway
    from .cli.common import check_url

    try:
        check_url(url)
    except ValueError as exc:
        raise pytest.UsageError(f"caas_world: --caas-core-url: {exc}") from None


def _check_port_base(base: int | None) -> None:
    """As `caas-sim up --port-base` (and 0: ephemeral ports): every service's port a TCP port."""
    top = 65535 - (catalogue.SINK_PORT - catalogue.CORE_PORT)
    if base is not None and not 0 <= base <= top:
        raise pytest.UsageError(f"caas_world: --caas-port-base: not a port base: {base} (0-{top}: every service's "
                                f"port, up to N+{catalogue.SINK_PORT - catalogue.CORE_PORT}, must be a TCP port)")


def _option(config: pytest.Config, name: str) -> Any:
    """The command line's value, else the ini file's (``None`` when neither is given)."""
    value = config.getoption(name, None)
    if value is None:
        value = config.getini(name) or None
    return value


class CaasWorld:
    """The world a test talks to; ``caas_world`` hands out the session's one, reset."""

    def __init__(self, config: WorldConfig, folder: Path):
        self.config = config
        self.folder = folder
        self.services: tuple[str, ...] = config.services or catalogue.NAMES
        unknown = [name for name in self.services if name not in catalogue.BY_NAME]
        if unknown:
            raise CaasWorldError(f"unknown service(s) {unknown}; known: {', '.join(catalogue.NAMES)}")
        self.core_url = config.core_url.rstrip("/") if config.core_url else None
        self.api_keys: dict[str, dict[str, str]] = {k: dict(v) for k, v in config.api_keys.items()}
        self.stack: Stack | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._admins: dict[str, Admin] = {}
        self._remote: RemoteCoordinator | None = None  # a core of your own that moves with the world
        self._probed = False  # whether a core of your own was asked what it speaks
        self._core_resets = self.core_url is None  # whether the core is reset with the world
        self.dirty = False  # a test had it since the last reset

    # --- the session --------------------------------------------------------
    def start(self) -> CaasWorld:
        from caas_sim.scenarios.stack import Stack
        from caas_sim.simulators.kit.clock import Clock

        config = self.config
        secrets = dict(config.webhook_secrets)
        options = {name: dict(value) for name, value in config.options.items()}
        if self.core_url is None:
            core = {"database_url": f"sqlite+aiosqlite:///{self.folder / 'core.db'}", "api_keys": self.api_keys,
                    **config.core_settings}
            stack = Stack(services=list(self.services), seed=config.seed, clock=Clock("virtual"), options=options,
                          with_sink=False, core=core, webhook_secrets=secrets, shutdown_timeout=0.5)
        else:
            targets = {name: self.core_url + path for name, path in catalogue.WEBHOOK_SENDERS.items()
                       if name in self.services}
            stack = Stack(services=list(self.services), seed=config.seed, clock=Clock("virtual"), options=options,
                          with_sink=False, webhook_urls=targets, webhook_secrets=secrets,
                          ports=_ports(self.services, catalogue.CORE_PORT if config.port_base is None
                                       else config.port_base),
                          shutdown_timeout=0.5, unique_webhook_ids=True)  # your core saw earlier sessions
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="caas-world", daemon=True)
        self._thread.start()
        try:
            self._run(self._start(stack), timeout=START_TIMEOUT)
        except BaseException:
            self.close()
            raise
        self.stack = stack
        return self

    async def _start(self, stack: Stack) -> None:
        try:
            await stack.start()
        except OSError as exc:
            raise CaasWorldError(f"cannot start the simulators: {exc}" + (
                " (with --caas-core-url they listen on the catalogue's ports: is `caas-sim up` running? "
                "--caas-port-base moves them)" if self.core_url else "")) from None
        if self.core_url is None:
            from caas_core.api.validation import operations

            operations()  # the core compiles its contract on its first request: part of starting it

    def close(self) -> None:
        """Stop everything (the session's end)."""
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        try:
            if self._remote is not None:
                self._run(self._remote.close(), timeout=10)
            if self.stack is not None:
                self._run(self.stack.stop(), timeout=START_TIMEOUT)
            self._run(loop.shutdown_default_executor(), timeout=10)  # during()'s threads
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=10)
            if not loop.is_running():
                loop.close()
            self._loop = self._thread = None
            self._remote = self.stack = None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the world's loop and wait for it (from the test's thread)."""
        if self._loop is None:
            coro.close()
            raise CaasWorldError("the world is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- where things are ---------------------------------------------------
    @property
    def reference_core(self) -> bool:
        """Whether the core is the reference one, in this world (not one at ``--caas-core-url``)."""
        return self.core_url is None

    def url(self, name: str) -> str:
        """The base URL of ``"core"`` or of a simulator (``"iot"``, ``"registry-es"``...)."""
        if name == "core":
            return self.core_url or self._stack.url("core")
        if name not in self.services:
            raise KeyError(f"no service {name!r} in this world; there are: core, {', '.join(self.services)}")
        return self._stack.url(name)

    @property
    def webhook_secrets(self) -> dict[str, str]:
        """The ``whsec_`` secret each simulator that sends webhooks signs them with: what a core
        verifies them with (the reference core is given them)."""
        return {name: self._stack.webhook_secret(name) for name in self.services
                if name in catalogue.WEBHOOK_SENDERS}

    @property
    def webhook_urls(self) -> dict[str, str]:
        """Where each simulator that sends webhooks sends them: the core's receivers."""
        core = self.url("core")
        return {name: core + path for name, path in catalogue.WEBHOOK_SENDERS.items() if name in self.services}

    def auth(self, key: str | None = None) -> dict[str, str]:
        """``{"Authorization": "Bearer <key>"}`` for the core's API; without a key, the first
        customer's (``dev-customer`` by default)."""
        if key is None:
            key = next((k for k, v in self.api_keys.items() if v.get("role") == "customer"), None)
            if key is None:
                raise CaasWorldError("no customer among the world's API keys: name the key")
        elif key not in self.api_keys:
            raise KeyError(f"no API key {key!r}; the world's: {', '.join(self.api_keys)}")
        return {"Authorization": f"Bearer {key}"}

    def admin(self, name: str) -> Admin:
        """The typed admin client of ``"core"`` or a simulator (``caas_sim.simulators.client.Admin``)."""
        if name not in self._admins:
            from caas_sim.simulators.typed_client import Admin

            token = self.config.admin_token if name == "core" and self.core_url else None
            self._admins[name] = Admin(self.url(name), token=token)
        return self._admins[name]

    # --- time ---------------------------------------------------------------
    def now(self) -> datetime:
        """The world's virtual time."""
        return datetime.fromtimestamp(self._stack.clock.now(), tz=UTC)

    def advance(self, duration: str | float) -> datetime:
        """Move the whole world forward by ``duration`` (``"15m"``, ``"3d"``, ``90`` seconds),
        event by event, settling in between: each timer, job, retry and webhook due on the
        way happens at its time. Returns the world's time after the move."""
        from caas_sim.simulators.kit.durations import parse_duration

        seconds = parse_duration(duration)
        remote = self._coordinated_core()
        if remote is None:
            self._run(self._stack.advance(seconds))
        else:
            self._run(self._advance_remote(remote, seconds))
        return self.now()

    @staticmethod
    async def _advance_remote(remote: RemoteCoordinator, seconds: float) -> None:
        await remote.next_due()  # quiet, and where every clock is now
        await remote.advance_to(remote.now() + seconds)

    def settle(self) -> None:
        """Let everything running finish (a zero-length ``advance``)."""
        self.advance(0)

    def during(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call(*args, **kwargs)`` (a blocking request into the world) while the world's
        clock moves whenever the world waits on it meanwhile: a request whose answer waits
        on the clock (injected latency, a timeout, a peer answering later) gets it. Without
        ``during`` such a request waits for a clock nobody moves. (With a core of your own,
        only the simulators' clock moves meanwhile.)"""

        async def run() -> T:
            return await self._stack.during(asyncio.to_thread(call, *args, **kwargs))

        return self._run(run())

    # --- faults, journals, audit ---------------------------------------------
    def fault(self, name: str, rule: FaultRuleInput | Mapping[str, Any]) -> FaultRule:
        """Add a fault rule to a simulator (a ``FaultRuleInput`` or its dict: ``match``,
        ``action``, ``times``, ``probability``, ``window``); returns it with its id."""
        return self.admin(name).add_fault(rule)

    def faults(self, name: str) -> list[FaultRule]:
        """The rules in force at a simulator, with their hits."""
        return self.admin(name).faults().rules

    def clear_faults(self, name: str | None = None) -> int:
        """Remove the rules of one simulator, or of all; returns how many there were."""
        return sum(self.admin(service).clear_faults() for service in ([name] if name else self.services))

    def journal(self, name: str, since: int = 0) -> list[JournalEntry]:
        """A simulator's journal since the test began (or after sequence ``since``): every
        request, response, webhook, event, fault and contract violation."""
        return self.admin(name).journal_entries(since)

    def violations(self) -> list[JournalEntry]:
        """Every contract violation journaled by a simulator since the test began: requests
        of the core that broke a simulator's contract (a clean run has none)."""
        return [e for name in self.services for e in self.journal(name) if e.kind == "violation"]

    def audit(self) -> AuditReport:
        """The core's invariant audit (``GET /__admin/audit``): settle first, then audit."""
        return self.admin("core").audit()

    # --- between tests ------------------------------------------------------
    def reset(self) -> None:
        """Back to a fresh world (the clock stays): settle, reset every simulator through the
        admin protocol (state, timers, faults, journal, webhook subscriptions), then the core
        (the reference one's database; a core of your own if it answers ``/__admin/reset``),
        and empty the journals of what the core's last work left there meanwhile."""
        self.settle()
        for name in self.services:
            self.admin(name).reset()
        self.settle()
        if self._core_resets:
            self._reset_core()
            self.settle()
        for name in self.services:
            self.admin(name).clear_journal()

    def _reset_core(self) -> None:
        from caas_sim.simulators.client import AdminError

        try:
            self.admin("core").reset()
        except AdminError as exc:
            if self.core_url is None or exc.status not in (404, 405, 501):
                raise
            self._core_resets = False
            warnings.warn(CaasWorldWarning(
                f"the core at {self.core_url} does not reset (POST /__admin/reset answered {exc.status}): "
                f"its state carries from test to test"), stacklevel=3)

    # --- a core of your own -------------------------------------------------
    def _coordinated_core(self) -> RemoteCoordinator | None:
        """A core of your own that moves with the world: it speaks the admin protocol on a clock
        that can be moved. Asked once; a core that does not is told once, and keeps its time."""
        if self.core_url is None or self._probed:
            return self._remote
        from pydantic import ValidationError

        from caas_sim.scenarios.scenario.coordinator import RemoteCoordinator
        from caas_sim.simulators.client import AdminError, AdminUnreachable

        try:
            health = self.admin("core").health()
        except AdminUnreachable as exc:
            raise CaasWorldError(f"nothing answers at --caas-core-url {self.core_url} ({exc.reason}): start your "
                                 f"core first (its upstreams: {self._upstreams()})") from None
        except (AdminError, ValidationError) as exc:
            self._probed = True
            warnings.warn(CaasWorldWarning(
                f"the core at {self.core_url} speaks no admin protocol (GET /__admin/health: {_short(exc)}): "
                f"advance() moves the simulators alone, the core keeps its own time, and it is not reset "
                f"between tests"), stacklevel=3)
            return None
        self._probed = self._core_resets = True
        if health.clock.mode == "real":
            warnings.warn(CaasWorldWarning(
                f"the core at {self.core_url} runs on a real clock: advance() moves the simulators alone, and "
                f"what the core does on its clock (retries, expiries) happens in real time"), stacklevel=3)
            return None
        urls = {name: self.url(name) for name in self.services} | {"core": self.core_url}
        self._remote = self._run(RemoteCoordinator(urls, token=self.config.admin_token).start())
        return self._remote

    def _upstreams(self) -> str:
        return ", ".join(f"CAAS_UPSTREAMS__{catalogue.entry(n).setting.upper()}={self.url(n)}" for n in self.services)

    @property
    def _stack(self) -> Stack:
        if self.stack is None:
            raise CaasWorldError("the world is not running")
        return self.stack


def _ports(names: tuple[str, ...], base: int) -> dict[str, int]:
    """Each service's port: ``base`` plus its usual offset from the core's (as `caas-sim up
    --port-base`); every one ephemeral for a base of 0."""
    if base == 0:
        return {}
    return {name: base + catalogue.entry(name).port - catalogue.CORE_PORT for name in names}


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200]


# --- pytest -----------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("caas_sim", "caas-sim: the caas_world fixture")
    group.addoption("--caas-core-url", dest="caas_core_url", metavar="URL", default=None,
                    help="test a core of your own at URL: no reference core is started, the simulators send "
                         "their webhooks to URL plus the receiver paths (/caas/webhooks/...) and listen on the "
                         "catalogue's ports (see --caas-port-base)")
    group.addoption("--caas-seed", dest="caas_seed", type=int, metavar="N", default=None,
                    help="the world's seed (fleets, magic VINs, ids); default 0")
    group.addoption("--caas-port-base", dest="caas_port_base", type=int, metavar="N", default=None,
                    help="with --caas-core-url: the simulators listen on N plus their usual offset "
                         "(default 8000: factory 8101, iot 8103...; 0: ephemeral ports)")
    parser.addini("caas_core_url", "caas_world: the URL of a core of your own (--caas-core-url)", default="")
    parser.addini("caas_seed", "caas_world: the world's seed (--caas-seed)", default="")
    parser.addini("caas_port_base", "caas_world: the simulators' port base with a core of your own "
                                    "(--caas-port-base)", default="")


def pytest_configure(config: pytest.Config) -> None:
    """Options that cannot work stop pytest at start (a usage error), not each test's setup."""
    world = WorldConfig.from_pytest(config)
    if not hasattr(config, "workerinput"):  # the controller, before any worker starts
        try:
            check_workers(world, _xdist_workers(config))
        except CaasWorldError as exc:
            raise pytest.UsageError(f"caas_world: {exc}") from None


def _xdist_workers(config: pytest.Config) -> int:
    """How many xdist workers this run starts (``-n N``, ``--tx 2*popen``; xdist has resolved
    ``-n auto`` by now); 0 without xdist."""
    if getattr(config.option, "dist", "no") == "no":
        return 0
    count = 0
    for spec in getattr(config.option, "tx", None) or []:
        times, star, _ = str(spec).partition("*")
        count += int(times) if star and times.isdigit() else 1
    return count


def pytest_plugin_registered(plugin: object, plugin_name: str, manager: pytest.PytestPluginManager) -> None:
    """Registered once, under one name: enabled by ``-p caas_sim.scenarios.pytest_plugin`` (or
    ``pytest_plugins``) in an environment where the entry point loads it too, the other
    name would register the same module again (pluggy refuses that: "already registered")."""
    if plugin is not sys.modules[__name__]:
        return
    for alias in {ENTRY_POINT, __name__} - {plugin_name}:
        if manager.get_plugin(alias) is None and not manager.is_blocked(alias):
            manager.set_blocked(alias)


def pytest_report_header(config: pytest.Config) -> str | None:
    core_url = _option(config, "caas_core_url")
    if core_url:
        return f"caas_world: the simulators' webhooks go to the core at {core_url}"
    return None


def check_workers(config: WorldConfig, pytestconfig: pytest.Config | int) -> None:
    """A core of your own serves one world: not one per xdist worker (a worker's config, or
    the number of workers)."""
    workers = pytestconfig if isinstance(pytestconfig, int) else \
        int(getattr(pytestconfig, "workerinput", {}).get("workercount", 1))
    if config.core_url and workers > 1:
        raise CaasWorldError(f"--caas-core-url: one core cannot serve {workers} xdist workers' worlds (each resets "
                             f"it, and their simulators would share its ports): run with -n 0")


@pytest.fixture(scope="session")
def caas_world_config(pytestconfig: pytest.Config) -> WorldConfig:
    """What world ``caas_world`` starts: override it in a conftest to change it, e.g.
    ``return caas_world_config.replace(api_keys={"k1": {"role": "customer", "subject": "c-9"}})``."""
    return WorldConfig.from_pytest(pytestconfig)


@pytest.fixture(scope="session")
def caas_world_session(caas_world_config: WorldConfig, tmp_path_factory: pytest.TempPathFactory,
                       pytestconfig: pytest.Config):
    """The session's world (one per xdist worker), as it is: ``caas_world`` resets it first."""
    check_workers(caas_world_config, pytestconfig)
    world = CaasWorld(caas_world_config, tmp_path_factory.mktemp("caas-world")).start()
    try:
        yield world
    finally:
        world.close()


@pytest.fixture
def caas_world(caas_world_session: CaasWorld) -> CaasWorld:
    """The simulators and the core on one virtual clock, fresh for this test (see the module)."""
    if caas_world_session.dirty:
        caas_world_session.reset()
    caas_world_session.dirty = True
    return caas_world_session

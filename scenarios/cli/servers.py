"""`caas-sim up` and `caas-sim serve`: services in this process until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from caas_sim import catalogue, logs
from caas_sim.simulators.kit.contract import CONTRACTS_DIR
from caas_sim.simulators.kit.service import is_loopback

from .. import stack as stack_mod
from ..dashboard import DASHBOARD_OFFSET, Dashboard
from . import state, webhooks
from .common import (
    CORE_PORT,
    EXIT_USAGE,
    TOKEN_ENV,
    CliError,
    _check_profile,
    render_table,
    shipped_profile,
)


def cmd_up(args: argparse.Namespace) -> int:
    _check_exposure(args)
    logs.configure(level=args.log_level, fmt=args.log_format)
    names = args.services or _available_services()
    profiles = {service: shipped_profile(service, value) for service, value in args.faults}
    webhooks.check_started("--faults", profiles, names)
    for path in profiles.values():
        _check_profile(path)
    core_url = getattr(args, "core_url", None)
    if core_url and args.no_core:
        raise CliError("--no-core or --core-url, not both: --core-url already starts no core (its webhooks go "
                       "to yours), --no-core sends them to a sink", EXIT_USAGE)
    if core_url and args.database:
        raise CliError("--database is the reference core's, and --core-url starts none", EXIT_USAGE)
    targets = webhooks.resolve_targets(getattr(args, "webhook_url", []), names, core_url)
    secrets = webhooks.resolve_secrets(getattr(args, "secret", []), names)
    ports = {} if args.ephemeral else up_ports(names, getattr(args, "port_base", None))  # {}: port 0 for each
    core = None if args.no_core or core_url else ({"database_url": args.database} if args.database else {})
    if core is not None and "CAAS_API_KEYS" not in os.environ:
        core["api_keys"] = DEVELOPMENT_KEYS  # printed at start; set CAAS_API_KEYS for real ones
    if core is not None and os.environ.get("CAAS_WEBHOOK_SECRETS"):
        print("caas-sim: note: CAAS_WEBHOOK_SECRETS is not used by `up`: its core verifies with the secrets its "
              "simulators sign with (--secret)", file=sys.stderr)
    stack = stack_mod.Stack(services=names, seed=args.seed, access_log=args.access_log,
                            clock=stack_mod.parse_clock(args.clock),
                            host=args.host, ports=ports, fault_profiles=profiles, admin_token=args.admin_token,
                            core=core, with_sink=not core_url, webhook_urls=targets, webhook_secrets=secrets,
                            unique_webhook_ids=True)  # a core on a kept database, or your own, saw earlier runs
    dashboard = None if getattr(args, "no_dashboard", False) else \
        0 if args.ephemeral else (getattr(args, "port_base", None) or CORE_PORT) + DASHBOARD_OFFSET
    state_file = _writable_state_file(args.state_file)
    return _run_server(run_stack(stack, state_file=state_file, render=render_up,
                                 notes=_up_notes(core_url, secrets), dashboard=dashboard, core_url=core_url))


def _writable_state_file(given: str | None) -> Path:
    """The state file `up` will write, tried now: it wrote it only once everything listened."""
    path = state.state_path(given)
    try:
        state.check_writable(path)
    except OSError as exc:
        raise CliError(f"cannot write the state file {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    return path


def up_ports(names: list[str], base: int | None = None) -> dict[str, int]:
    """Each service's port: ``base`` (default the core's 8000) plus its usual offset, which is
    its catalogue port minus 8000 (the core 0, factory 101, ..., registry-uk 114, sink 199)."""
    base = CORE_PORT if base is None else base
    defaults = {name: stack_mod.SERVICES[name][1] for name in names} | {"sink": stack_mod.SINK_PORT,
                                                                         "core": CORE_PORT}
    return {name: base + port - CORE_PORT for name, port in defaults.items()}


def _up_notes(core_url: str | None, secrets: dict[str, str]) -> list[str]:
    notes = []
    if core_url:
        notes.append(f"no reference core: the webhooks go to your core at {core_url}, as the WEBHOOKS column "
                     f"says;\n`caas-sim secrets` prints their secrets as environment lines for it")
    if secrets and all(secret == webhooks.DEFAULT_SECRET for secret in secrets.values()):
        notes.append("webhooks are signed with the development secret (public; `--secret whsec_...` brings "
                     "your own)")
    return notes


#: API keys of a local `caas-sim up` when CAAS_API_KEYS is not set.
DEVELOPMENT_KEYS = {"dev-operator": {"role": "operator", "subject": "operator"},
                    "dev-customer": {"role": "customer", "subject": "c-1"},
                    "dev-dealership": {"role": "dealership", "subject": "ES-MAD-001"}}


def cmd_serve(args: argparse.Namespace) -> int:
    _check_exposure(args)
    logs.configure(level=args.log_level, fmt=args.log_format)
    if args.faults:
        args.faults = shipped_profile(args.name, args.faults)
        _check_profile(args.faults)
    name = args.name
    if name != "core" and getattr(args, "workers", 1) != 1:
        raise CliError("--workers is for the core only", EXIT_USAGE)
    if name == "core" and getattr(args, "secret", None):
        raise CliError("--secret is for a simulator; the core verifies with CAAS_WEBHOOK_SECRETS "
                       "(`caas-sim secrets --format json` prints those of a running `up`)", EXIT_USAGE)
    if name == "core" and args.workers > 1:
        return serve_core_processes(args)
    if name == "core":
        return _run_server(serve_core(args))
    port = stack_mod.SERVICES[name][1] if args.port is None else args.port
    stack = stack_mod.Stack(services=[name], seed=args.seed, access_log=args.access_log,
                            clock=stack_mod.parse_clock(args.clock),
                            host=args.host, ports={name: port}, with_sink=False, admin_token=args.admin_token,
                            fault_profiles={name: args.faults} if args.faults else {}, unique_webhook_ids=True)

    def subscribe(started: stack_mod.Stack) -> None:
        # The stack only wires webhooks to its own sink; alone, a simulator talks to the core.
        url = args.webhook_url or catalogue.default_webhook_url(name)
        if url:
            started.service(name).webhooks.subscribe("*", url, getattr(args, "secret", None) or webhooks.DEFAULT_SECRET)

    return _run_server(run_stack(stack, configure=subscribe))


def _check_exposure(args: argparse.Namespace) -> None:
    if not is_loopback(args.host) and not args.admin_token:
        raise CliError(f"refusing to bind {args.host} without --admin-token: off loopback the admin routes "
                       f"(clock, reset, faults) need a token (or set {TOKEN_ENV})", EXIT_USAGE)


def _available_services() -> list[str]:
    names = stack_mod.available_services()
    if not names:
        raise CliError("no simulator is available to start")
    return names


def _run_server(coro) -> int:
    try:
        import uvloop
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


async def run_stack(stack: stack_mod.Stack, *, configure: Callable[[stack_mod.Stack], Any] | None = None,
                    stop: asyncio.Event | None = None, out=None, state_file: Path | None = None,
                    render: Callable[..., str] | None = None, notes: list[str] = (),
                    dashboard: int | None = None, core_url: str | None = None) -> int:
    """Start ``stack``, print where everything is (``render``, then ``notes``), serve until
    ``stop`` (default: SIGINT/SIGTERM); with ``state_file``, record the service table and
    webhook targets and secrets there meanwhile (``state``); with ``dashboard`` (a port, 0:
    any free one), serve the dashboard of the stack there too (``render`` is then given
    its URL as ``dashboard=``); ``core_url``: the core of your own it serves, recorded there too."""
    out = out or sys.stdout
    stop = stop or _stop_on_signals()
    board = None
    try:
        try:
            await stack.start()
        except OSError as exc:
            raise CliError(_bind_error(exc, stack)) from None
        except ValueError as exc:  # a fault profile the service rejects
            raise CliError(f"cannot start {_starting(stack)}: {exc}") from None
        except RuntimeError as exc:  # the core's DatabaseUnavailable
            raise _core_database_error(stack, exc) or exc
        if configure:
            configure(stack)
        if dashboard is not None:
            board = await _start_dashboard(stack, dashboard)
        print(render(stack, dashboard=board.url) if board and render else (render or render_stack)(stack), file=out)
        if board and stack.admin_token and not is_loopback(stack.host):
            print(f"\ndashboard: open {board.url}/?token=<the admin token> once (a cookie then carries it)", file=out)
        for note in notes:
            print(f"\n{note}", file=out)
        if stack.core is not None and stack.core.get("api_keys") is DEVELOPMENT_KEYS:
            print("\ncore API keys (development): " + ", ".join(
                f"{key} ({grant['role']} {grant['subject']})" for key, grant in DEVELOPMENT_KEYS.items()), file=out)
        if state_file is not None:
            state.write(state_file, {name: r.url for name, r in stack.running.items() if name != "sink"},
                        webhooks=webhook_table(stack), core_url=core_url)
            print(f"\nservice table in {state_file}: `caas-sim clock`, `fault`, `journal` and `secrets` find "
                  f"every service there", file=out)
        clock = stack.clock
        # without a service table (`serve`), `clock` would look for a running `up`, or the default ports
        urls = "" if state_file is not None else "".join(f" --url {r.url}" for name, r in stack.running.items()
                                                          if name != "sink")
        hint = f"; move it with `caas-sim clock advance 15m{urls}`" if clock.mode != "real" else ""
        print(f"\nclock {clock.mode} at {clock.now_iso()}, seed {stack.seed}{hint}. Ctrl-C to stop.",
              file=out, flush=True)
        await stop.wait()
        print("stopping...", file=sys.stderr)
    finally:
        if state_file is not None:
            state.remove(state_file)
        if board is not None:
            await board.stop()
        await stack.stop()
    return 0


async def _start_dashboard(stack: stack_mod.Stack, port: int) -> Dashboard:
    """The dashboard of ``stack`` on ``port``: every service but the sink (a lane of the
    journal's diagram only), through the admin protocol, with the stack's admin token."""
    services = {name: running.url for name, running in stack.running.items() if name != "sink"}
    lanes = {"sink": stack.url("sink")} if "sink" in stack.running else {}
    try:
        return await Dashboard(services, host=stack.host, port=port, token=stack.admin_token, lanes=lanes).start()
    except OSError as exc:
        why = ("address already in use (`up --no-dashboard` skips it; `--port-base N` or `--ephemeral` pick "
               "other ports)" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc))
        raise CliError(f"cannot listen on {stack.host}:{port} for the dashboard: {why}") from None


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or Windows: Ctrl-C still ends it as KeyboardInterrupt
    return stop


def _bind_error(exc: OSError, stack: stack_mod.Stack) -> str:
    if isinstance(exc, FileNotFoundError):
        return str(exc)
    failed = _starting(stack)
    port = stack.ports.get(failed, 0)
    if exc.errno == errno.EADDRINUSE:
        return (f"cannot listen on {stack.host}:{port} for {failed}: address already in use "
                f"(is `caas-sim up` already running? `up --port-base N` or `up --ephemeral`, or "
                f"`serve NAME --port P`, pick other ports)")
    return f"cannot listen on {stack.host}:{port} for {failed}: {exc.strerror or exc}"


def _starting(stack: stack_mod.Stack) -> str:
    """The service a failed start was at (a failed start stops those it started)."""
    return stack.starting or "?"


def _core_database_error(stack: stack_mod.Stack, exc: RuntimeError) -> CliError | None:
    """The one line for a reference core that cannot open its database, as `serve core` says it."""
    if stack.starting != "core":
        return None
    # imported here: the core it started imported it already (a run without the core never does)
    from caas_core.store.db import DatabaseUnavailable

    if isinstance(exc, DatabaseUnavailable):
        return CliError(f"the core cannot open its database: {exc}")
    return None


def render_stack(stack: stack_mod.Stack) -> str:
    rows = []
    for name, running in stack.running.items():
        if name == "sink":
            rows.append([name, running.url, "-", "- (webhook receiver: POST /webhooks/{service})"])
        elif name == "core":
            rows.append([name, running.url, f"{running.url}/__admin", _relative(CONTRACTS_DIR / "core.yaml")])
        else:
            rows.append([name, running.url, f"{running.url}/__admin", _contract_file(stack, name)])
    return render_table(["SERVICE", "URL", "ADMIN", "CONTRACT"], rows)


def webhook_table(stack: stack_mod.Stack) -> dict[str, dict[str, str]]:
    """Where each started service that sends webhooks sends them, and its signing secret."""
    table = {}
    for name in stack.services:
        subscriptions = stack.service(name).webhooks.subscriptions if name in catalogue.WEBHOOK_SENDERS else []
        if subscriptions:
            sub = next((s for s in subscriptions if s.event == "*"), subscriptions[0])
            table[name] = {"url": sub.url, "secret": sub.secret}
    return table


def render_up(stack: stack_mod.Stack, dashboard: str | None = None) -> str:
    """`up`'s start table: each service, its admin routes, where its webhooks go and what signs
    them; and the dashboard's URL, when it runs."""
    table = webhook_table(stack)
    rows = []
    for name, running in stack.running.items():
        if name == "sink":
            rows.append([name, running.url, "-", "(receives POST /webhooks/{service})", "-"])
        elif name == "core":
            rows.append([name, running.url, f"{running.url}/__admin", "-", "-"])
        else:
            hook = table.get(name)
            rows.append([name, running.url, f"{running.url}/__admin", *((hook["url"], hook["secret"]) if hook
                                                                         else ("-", "-"))])
    if dashboard:
        rows.append(["dashboard", dashboard, "-", "(open it in a browser)", "-"])
    contracts = _relative(CONTRACTS_DIR)
    return (render_table(["SERVICE", "URL", "ADMIN", "WEBHOOKS", "SECRET"], rows)
            + f"\n\ncontracts: {contracts}/<service>.yaml ({contracts}/core.yaml: the core's API and "
              f"webhook receivers)")


def _contract_file(stack: stack_mod.Stack, name: str) -> str:
    module = importlib.import_module(stack_mod.SERVICES[name][0])
    return _relative(CONTRACTS_DIR / getattr(module, "CONTRACT", f"{stack.service(name).contract.name}.yaml"))


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


async def serve_core(args: argparse.Namespace, *, stop: asyncio.Event | None = None) -> int:
    """The reference core alone, configured by CAAS_* variables; the flags override them."""
    from aiohttp import web

    from caas_core.api.app import create_app
    from caas_core.settings import CoreSettings
    from caas_core.store.db import DatabaseUnavailable

    overrides = {"host": args.host, "clock": args.clock, "seed": args.seed}
    if getattr(args, "database", None):
        overrides["database_url"] = args.database
    if args.port is not None:
        overrides["port"] = args.port
    if args.admin_token:
        overrides["admin_token"] = args.admin_token
    try:
        settings = CoreSettings(**overrides)
    except ValueError as exc:
        raise CliError(f"core settings: {exc}", EXIT_USAGE) from None
    reuse_port = getattr(args, "reuse_port", False)
    access = logging.getLogger(logs.ACCESS_LOGGER) if getattr(args, "access_log", False) else None
    runner = web.AppRunner(create_app(settings), access_log=access, access_log_format=logs.ACCESS_FORMAT)
    try:
        await runner.setup()
    except DatabaseUnavailable as exc:
        raise CliError(f"the core cannot open its database: {exc}") from None
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise CliError(f"cannot listen on {settings.host}:{settings.port} for the core: {exc.strerror or exc}") from None
    url = f"http://{settings.host}:{runner.addresses[0][1]}"
    if not reuse_port:  # one of serve_core_processes' children: the parent prints
        print(render_table(["SERVICE", "URL", "ADMIN", "CONTRACT"],
                           [["core", url, f"{url}/__admin", _relative(CONTRACTS_DIR / "core.yaml")]]), flush=True)
    stop = stop or _stop_on_signals()
    await stop.wait()
    await runner.cleanup()
    return 0


def serve_core_processes(args: argparse.Namespace) -> int:
    """``serve core --workers N``: N core processes on one port (SO_REUSEPORT: the kernel
    spreads connections) and one PostgreSQL. They share the job queue, whose claims
    (``FOR UPDATE SKIP LOCKED`` with leases) run each job once, and the webhook inbox,
    whose primary key records each webhook once whichever process it reaches."""
    import socket
    import subprocess
    import time

    from caas_core.settings import CoreSettings

    from ..listening import wait_listening

    try:
        database = CoreSettings(**({"database_url": args.database} if args.database else {})).database_url
    except ValueError as exc:
        raise CliError(f"core settings: {exc}", EXIT_USAGE) from None
    if not database.startswith(("postgresql", "postgres")):
        raise CliError("--workers needs PostgreSQL (--database or CAAS_DATABASE_URL postgresql://...): several "
                       "processes share its job queue; SQLite is for one process", EXIT_USAGE)
    # The tables first, once: children creating them together on a fresh database race.
    from caas_core.store.db import Database, DatabaseUnavailable

    async def create_tables() -> None:
        await (await Database.open(database)).close()

    try:
        asyncio.run(create_tables())
    except DatabaseUnavailable as exc:
        raise CliError(f"the core cannot open its database: {exc}") from None
    # Hold the port with a bound, non-listening SO_REUSEPORT socket: an ephemeral port is
    # then chosen once, and no other program takes it between the children's binds.
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((args.host, CORE_PORT if args.port is None else args.port))
    port = holder.getsockname()[1]
    command = [sys.executable, "-m", "caas_sim.scenarios.cli", "serve", "core", "--reuse-port", "--port", str(port),
               "--host", args.host, "--clock", args.clock, "--seed", str(args.seed), "--database", database]
    env = dict(os.environ, **({"CAAS_SIM_ADMIN_TOKEN": args.admin_token} if args.admin_token else {}))
    children = [subprocess.Popen(command, env=env) for _ in range(args.workers)]
    url = f"http://{args.host}:{port}"
    try:
        try:
            wait_listening(children, port, host=args.host, what="a core process")
        except RuntimeError as exc:
            raise CliError(str(exc)) from None
        print(render_table(["SERVICE", "URL", "ADMIN", "CONTRACT"],
                           [[f"core ({args.workers} processes, pids {' '.join(str(c.pid) for c in children)})",
                             url, f"{url}/__admin", _relative(CONTRACTS_DIR / "core.yaml")]]), flush=True)
        signals = {signal.SIGINT: None, signal.SIGTERM: None}
        stopping = []
        for sig in signals:
            signals[sig] = signal.signal(sig, lambda *_: stopping.append(True))
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        holder.close()
    failed = [c.returncode for c in children if c.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed and not stopping else 0

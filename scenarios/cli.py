"""``caas-sim``: start the simulators and drive them from a shell.

``up`` and ``serve`` run services in this process; every other command speaks
the admin protocol over HTTP (``simulators.client``), so it works as well
against services started elsewhere, the core included (``--url``).
Expected failures (a service that is not running, a rule it rejects) end with
one line on stderr, never a traceback: exit 2 for usage errors, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, NamedTuple

import aiohttp
import yaml
import yarl

from simulators.client import AdminClient, AdminError, AdminUnreachable, load_fault_profile
from simulators.kit.service import is_loopback
from simulators.kit.contract import CONTRACTS_DIR
from simulators.kit.durations import format_duration, parse_duration

from . import stack as stack_mod

EXIT_FAILURE, EXIT_USAGE = 1, 2
CORE_PORT = 8000
TOKEN_ENV = "CAAS_SIM_ADMIN_TOKEN"
LOCALHOST = "127.0.0.1"
UP_HINT = "start the simulators with `caas-sim up`"
#: Real seconds between two polls of `journal --follow` (a shell tool, not domain time).
FOLLOW_INTERVAL = 0.5


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse would print the whole usage block; one line says enough.
        raise CliError(f"{message} (see `{self.prog} --help`)", EXIT_USAGE)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        return int(args.handler(args) or 0)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except AdminUnreachable as exc:
        return _fail(f"cannot reach {exc.url} ({exc.reason}): is it running? {UP_HINT}")
    except AdminError as exc:
        return _fail(f"{exc.url} answered {exc}")
    except KeyboardInterrupt:
        # Ctrl-C is the normal way out of `journal --follow`.
        return 0 if getattr(args, "follow", False) else 130
    except BrokenPipeError:  # `caas-sim journal iot | head`: the reader is gone, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _fail(message: str, code: int = EXIT_FAILURE) -> int:
    print(f"caas-sim: error: {message}", file=sys.stderr)
    return code


# --- argument types: a bad value is a usage error with the reason -----------
def _clock_spec(value: str) -> str:
    try:
        stack_mod.parse_clock(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _duration(value: str) -> str:
    try:
        parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value!r} (0-65535; 0 picks a free one)")
    return int(value)


def _url(value: str) -> str:
    try:
        url = yarl.URL(value)
        ok = url.scheme in ("http", "https") and bool(url.host)
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"not a base URL: {value!r} (e.g. http://127.0.0.1:8103)")
    return value


def _simulator(value: str) -> str:
    if value not in stack_mod.SERVICES:
        raise argparse.ArgumentTypeError(f"unknown service {value!r}; available: {', '.join(stack_mod.SERVICES)}")
    return value


def _service_list(value: str) -> list[str]:
    return [_simulator(name.strip()) for name in value.split(",") if name.strip()]


def _profile_arg(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"expected SERVICE=PROFILE.yaml, got {value!r}")
    return _simulator(name), path


# --- the parser ---------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="caas-sim", formatter_class=fmt,
                     description="Simulators of the CaaS platform's external systems, and the tools to drive them.",
                     epilog="examples:\n"
                            "  caas-sim up --seed 7                     every simulator, one virtual clock\n"
                            "  caas-sim fault add iot --rule '{\"action\": {\"type\": \"vehicle_offline\"}, \"times\": 2}'\n"
                            "  caas-sim clock advance 15m               move the shared clock, event by event\n"
                            "  caas-sim journal iot --follow            watch what the IoT simulator sees\n\n"
                            f"Admin tokens may also come from ${TOKEN_ENV}.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    server = _Parser(add_help=False)
    server.add_argument("--seed", type=int, default=0, help="seed of every RNG and fleet (default 0)")
    server.add_argument("--clock", type=_clock_spec, default="virtual", metavar="real|virtual|scaled:N",
                        help="virtual: moves only when told (default); scaled:N: N virtual seconds per real "
                             "second; real: wall time")
    server.add_argument("--host", default=LOCALHOST,
                        help=f"interface to bind (default {LOCALHOST}); any other needs --admin-token")
    server.add_argument("--admin-token", default=os.environ.get(TOKEN_ENV), metavar="T",
                        help="require `Authorization: Bearer T` on admin routes")

    up = commands.add_parser("up", parents=[server], formatter_class=fmt,
                             help="start every simulator and the webhook sink on their default ports",
                             description="Start the simulators (and a webhook sink standing in for the core) in "
                                         "one process on one shared clock, each on its default port, until "
                                         "Ctrl-C or SIGTERM.")
    up.add_argument("--services", type=_service_list, metavar="NAME,...",
                    help=f"only these (default: every available one of {', '.join(stack_mod.SERVICES)})")
    up.add_argument("--faults", type=_profile_arg, nargs="+", action="extend", default=[],
                    metavar="SERVICE=PROFILE.yaml", help="load a fault profile into a service at start")
    up.set_defaults(handler=cmd_up)

    serve = commands.add_parser("serve", parents=[server], formatter_class=fmt,
                                help="start one simulator alone",
                                description="Start one simulator (no webhook sink) until Ctrl-C or SIGTERM.")
    serve.add_argument("name", type=_simulator, metavar="NAME", help=f"one of {', '.join(stack_mod.SERVICES)}")
    serve.add_argument("--port", type=_port, help="port to listen on (default: the service's own)")
    serve.add_argument("--faults", metavar="PROFILE.yaml", help="load a fault profile at start")
    serve.add_argument("--webhook-url", type=_url, metavar="URL",
                       help="deliver every webhook of the service to this URL (default: the core's endpoint "
                            "for it on 127.0.0.1:8000, as the simulator's module names it in DEFAULT_WEBHOOK_URL)")
    serve.set_defaults(handler=cmd_serve)

    admin = _Parser(add_help=False)
    admin.add_argument("--token", default=os.environ.get(TOKEN_ENV), help="admin token of the service")
    target = _Parser(add_help=False, parents=[admin])
    target.add_argument("service", nargs="?", metavar="SERVICE",
                        help="a simulator name (its default port on 127.0.0.1), or core")
    target.add_argument("--url", type=_url, help="the service's base URL instead, e.g. http://127.0.0.1:8103")

    fault = commands.add_parser("fault", help="fault rules of a running service",
                                description="Add, list and remove the fault rules of a running service.")
    faults = fault.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = faults.add_parser("add", parents=[target], help="add a rule, or every rule of a profile",
                            description="Add one rule (JSON, as in contracts/admin.yaml) or a YAML profile "
                                        "(`rules:` or a bare list), all or nothing.")
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument("--rule", metavar="JSON", help='e.g. \'{"action": {"type": "http_error"}, "times": 1}\'')
    source.add_argument("--file", metavar="PROFILE.yaml", help="a fault profile")
    add.set_defaults(handler=cmd_fault_add)
    listing = faults.add_parser("list", parents=[target], help="the rules in force",
                                description="The rules in force: id, action, match, scope and hits.")
    listing.add_argument("--actions", action="store_true", help="also list the actions the service knows")
    listing.set_defaults(handler=cmd_fault_list)
    clear = faults.add_parser("clear", parents=[target], help="remove every rule")
    clear.set_defaults(handler=cmd_fault_clear)
    delete = faults.add_parser("delete", parents=[target], help="remove one rule")
    delete.add_argument("rule_id", metavar="RULE_ID")
    delete.set_defaults(handler=cmd_fault_delete)

    clock = commands.add_parser("clock", help="show or move the clocks of running services",
                                description="Show or move clocks. Without --service or --url: every simulator "
                                            "answering on its default port.")
    clocks = clock.add_subparsers(dest="action", metavar="ACTION", required=True)
    chosen = _Parser(add_help=False, parents=[admin])
    which = chosen.add_mutually_exclusive_group()
    which.add_argument("--service", action="append", type=_named, metavar="NAME",
                       help="a service on its default port (repeatable)")
    which.add_argument("--url", action="append", type=_url, metavar="URL", help="a service's base URL (repeatable)")
    advance = clocks.add_parser("advance", parents=[chosen], formatter_class=fmt,
                                help="move forward by a duration, event by event",
                                description="Move clocks forward by DURATION; each timer due on the way fires "
                                            "and settles. Services sharing a clock (one `caas-sim up`) are "
                                            "moved once.")
    advance.add_argument("duration", type=_duration, metavar="DURATION", help="90s, 15m, 1h30m, 3d, 250ms or seconds")
    advance.set_defaults(handler=cmd_clock_advance)
    show = clocks.add_parser("show", parents=[chosen], help="now, mode, busy and next due time of each service")
    show.set_defaults(handler=cmd_clock_show)

    journal = commands.add_parser("journal", parents=[target], help="what a service saw, one entry a line",
                                  description="Print journal entries: seq, virtual time, kind, direction, "
                                              "method, path, status, and the fault rule or violation.")
    journal.add_argument("--since", type=int, default=0, metavar="N", help="entries after sequence number N")
    journal.add_argument("--limit", type=int, default=1000, help="entries per request (default 1000)")
    journal.add_argument("--follow", "-f", action="store_true", help="keep printing new entries until Ctrl-C")
    journal.set_defaults(handler=cmd_journal)

    demo = commands.add_parser("demo", help="run the demonstration scenario")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=cmd_demo)

    bench = commands.add_parser("bench", help="measure throughput")
    benches = bench.add_subparsers(dest="action", metavar="TARGET", required=True)
    sim = benches.add_parser("sim", help="load a simulator (OTA and webhooks)")
    sim.add_argument("--duration", type=_duration, default="10s", help="how long to load (default 10s)")
    sim.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    sim.set_defaults(handler=cmd_bench_sim)
    return parser


def _named(value: str) -> str:
    if value != "core":
        _simulator(value)
    return value


# --- up and serve ---------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    _check_exposure(args)
    names = args.services or _available_services()
    profiles = dict(args.faults)
    stray = sorted(set(profiles) - set(names))
    if stray:
        raise CliError(f"--faults for {', '.join(stray)}, which is not started (--services {','.join(names)})",
                       EXIT_USAGE)
    for path in profiles.values():
        _check_profile(path)
    ports = {name: stack_mod.SERVICES[name][1] for name in names} | {"sink": stack_mod.SINK_PORT}
    stack = stack_mod.Stack(services=names, seed=args.seed, clock=stack_mod.parse_clock(args.clock),
                            host=args.host, ports=ports, fault_profiles=profiles, admin_token=args.admin_token)
    return _run_server(run_stack(stack))


def cmd_serve(args: argparse.Namespace) -> int:
    _check_exposure(args)
    if args.faults:
        _check_profile(args.faults)
    name = args.name
    port = stack_mod.SERVICES[name][1] if args.port is None else args.port
    stack = stack_mod.Stack(services=[name], seed=args.seed, clock=stack_mod.parse_clock(args.clock),
                            host=args.host, ports={name: port}, with_sink=False, admin_token=args.admin_token,
                            fault_profiles={name: args.faults} if args.faults else {})

    def subscribe(started: stack_mod.Stack) -> None:
        # The stack only wires webhooks to its own sink; alone, a simulator talks to the core.
        url = args.webhook_url or getattr(importlib.import_module(stack_mod.SERVICES[name][0]),
                                          "DEFAULT_WEBHOOK_URL", None)
        if url:
            started.service(name).webhooks.subscribe("*", url)

    return _run_server(run_stack(stack, configure=subscribe))


def _check_exposure(args: argparse.Namespace) -> None:
    if not is_loopback(args.host) and not args.admin_token:
        raise CliError(f"refusing to bind {args.host} without --admin-token: off loopback the admin routes "
                       f"(clock, reset, faults) need a token (or set {TOKEN_ENV})", EXIT_USAGE)


def _check_profile(path: str) -> None:
    try:
        load_fault_profile(path)
    except OSError as exc:
        raise CliError(f"cannot read fault profile {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CliError(f"{path}: not valid YAML{where}: {reason}", EXIT_USAGE) from None
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


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
                    stop: asyncio.Event | None = None, out=None) -> int:
    """Start ``stack``, print where everything is, serve until ``stop`` (default: SIGINT/SIGTERM)."""
    out = out or sys.stdout
    stop = stop or _stop_on_signals()
    try:
        try:
            await stack.start()
        except OSError as exc:
            raise CliError(_bind_error(exc, stack)) from None
        except ValueError as exc:  # a fault profile the service rejects
            raise CliError(f"cannot start {_starting(stack)}: {exc}") from None
        if configure:
            configure(stack)
        print(render_stack(stack), file=out)
        clock = stack.clock
        hint = "; move it with `caas-sim clock advance 15m`" if clock.mode != "real" else ""
        print(f"\nclock {clock.mode} at {clock.now_iso()}, seed {stack.seed}{hint}. Ctrl-C to stop.",
              file=out, flush=True)
        await stop.wait()
        print("stopping...", file=sys.stderr)
    finally:
        await stack.stop()
    return 0


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
                f"(is `caas-sim up` already running? `caas-sim serve NAME --port P` picks another port)")
    return f"cannot listen on {stack.host}:{port} for {failed}: {exc.strerror or exc}"


def _starting(stack: stack_mod.Stack) -> str:
    """The service a failed start was at: Stack starts the sink, then services in order."""
    order = (["sink"] if stack.with_sink else []) + list(stack.services)
    return next((name for name in order if name not in stack.running), "?")


def render_stack(stack: stack_mod.Stack) -> str:
    rows = []
    for name, running in stack.running.items():
        if name == "sink":
            rows.append([name, running.url, "-", "- (webhook receiver: POST /webhooks/{service})"])
        else:
            rows.append([name, running.url, f"{running.url}/__admin", _contract_file(stack, name)])
    return render_table(["SERVICE", "URL", "ADMIN", "CONTRACT"], rows)


def _contract_file(stack: stack_mod.Stack, name: str) -> str:
    module = importlib.import_module(stack_mod.SERVICES[name][0])
    path = CONTRACTS_DIR / getattr(module, "CONTRACT", f"{stack.service(name).contract.name}.yaml")
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def render_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = [headers, *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


# --- faults -----------------------------------------------------------------------
def _target(args: argparse.Namespace) -> tuple[str, str]:
    """(label, base URL) of the one service a command is about."""
    if args.url:
        return args.service or args.url, args.url
    if not args.service:
        raise CliError("give a SERVICE name or --url", EXIT_USAGE)
    return args.service, default_url(args.service)


def default_url(name: str) -> str:
    if name in stack_mod.SERVICES:
        return f"http://{LOCALHOST}:{stack_mod.SERVICES[name][1]}"
    if name == "core":
        return f"http://{LOCALHOST}:{CORE_PORT}"
    raise CliError(f"unknown service {name!r}; known: {', '.join([*stack_mod.SERVICES, 'core'])} "
                   f"(or give --url)", EXIT_USAGE)


def _with_admin(url: str, token: str | None, call: Callable[[AdminClient], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with AdminClient(url, token=token) as admin:
            return await call(admin)

    return asyncio.run(run())


def cmd_fault_add(args: argparse.Namespace) -> int:
    label, url = _target(args)
    if args.file:
        _check_profile(args.file)
        rules = load_fault_profile(args.file)
    else:
        try:
            rule = json.loads(args.rule)
        except json.JSONDecodeError as exc:
            raise CliError(f"--rule is not valid JSON: {exc}", EXIT_USAGE) from None
        if isinstance(rule, dict) and "rules" in rule:
            rules = rule["rules"]
        else:
            rules = rule if isinstance(rule, list) else [rule]
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise CliError("--rule wants a JSON object (or a list of them)", EXIT_USAGE)
    if not rules:
        raise CliError(f"no rule to add (empty {'profile ' + args.file if args.file else '--rule'})", EXIT_USAGE)
    added = _with_admin(url, args.token, lambda admin: admin.add_faults(rules))
    print(f"added {len(added)} rule{'s' if len(added) != 1 else ''} to {label}:")
    print(render_rules(added))
    return 0


def cmd_fault_list(args: argparse.Namespace) -> int:
    label, url = _target(args)
    listing = _with_admin(url, args.token, lambda admin: admin.faults())
    print(render_rules(listing["rules"]) if listing["rules"] else f"no fault rules on {label}")
    if args.actions:
        print()
        print(render_table(["ACTION", "KIND", "DESCRIPTION"],
                           [[a["name"], a["kind"], a["description"]] for a in listing["actions"]]))
    return 0


def cmd_fault_clear(args: argparse.Namespace) -> int:
    label, url = _target(args)
    removed = _with_admin(url, args.token, lambda admin: admin.clear_faults())
    print(f"removed {removed} rule{'s' if removed != 1 else ''} from {label}")
    return 0


def cmd_fault_delete(args: argparse.Namespace) -> int:
    label, url = _target(args)
    _with_admin(url, args.token, lambda admin: admin.delete_fault(args.rule_id))
    print(f"removed {args.rule_id} from {label}")
    return 0


def render_rules(rules: list[dict]) -> str:
    return render_table(["ID", "ACTION", "MATCH", "SCOPE", "HITS"], [_rule_row(r) for r in rules])


def _rule_row(rule: dict) -> list[str]:
    action = rule["action"]
    params = " ".join(f"{k}={v}" for k, v in (action.get("params") or {}).items())
    match = rule.get("match") or {}
    parts = [match.get("method"), match.get("path"),
             f"op={match['operation']}" if match.get("operation") else None,
             *(f"{k}={v}" for k, v in (match.get("selectors") or {}).items())]
    scope = []
    if rule.get("times") is not None:
        scope.append(f"{rule['remaining']}/{rule['times']} left")
    if rule.get("probability") is not None:
        scope.append(f"p={rule['probability']:g}")
    window = rule.get("window") or {}
    if window:
        scope.append(f"{window.get('from', '')}..{window.get('until', '')}")
    return [rule["id"], f"{action['type']} {params}".strip(), " ".join(p for p in parts if p) or "*",
            ", ".join(scope) or "always", str(rule["hits"])]


# --- clock ------------------------------------------------------------------------
class Target(NamedTuple):
    label: str
    admin: AdminClient
    health: dict  # as first read: its clock tells which services share one

    @property
    def epoch(self) -> float:
        return self.health["clock"]["epoch"]


async def _clock_targets(args: argparse.Namespace, session: aiohttp.ClientSession) -> list[Target]:
    """The services to act on; default: the simulators that answer on their default ports."""
    explicit = [(u, u) for u in args.url or []] or [(n, default_url(n)) for n in args.service or []]
    candidates = explicit or [(n, default_url(n)) for n in stack_mod.SERVICES]
    clients = [(label, AdminClient(url, token=args.token, session=session)) for label, url in candidates]
    healths = await asyncio.gather(*(c.health() for _, c in clients), return_exceptions=True)
    found = []
    for (label, client), health in zip(clients, healths):
        if isinstance(health, AdminUnreachable) and not explicit:
            continue  # discovery: a simulator that is not running is not an error
        if isinstance(health, BaseException):
            raise health
        found.append(Target(label, client, health))
    if not found:
        tried = ", ".join(client.base_url for _, client in clients)
        raise CliError(f"no simulator answers on {tried}: {UP_HINT}")
    return found


def cmd_clock_advance(args: argparse.Namespace) -> int:
    seconds = parse_duration(args.duration)

    async def run() -> int:
        async with aiohttp.ClientSession() as session:
            targets = await _clock_targets(args, session)
            real = [t.label for t in targets if t.health["clock"]["mode"] == "real"]
            pending = [t for t in targets if t.label not in real]
            while pending:
                # Services of one process share a clock: advance one, and whoever
                # moved along with it shares it (an equal epoch alone is not proof:
                # two fresh virtual clocks in two processes both start at the same instant).
                head, pending = pending[0], pending[1:]
                after = await head.admin.advance(args.duration)
                group, rest = [head.label], []
                for other in pending:
                    now = (await other.admin.clock())["epoch"]
                    if _moved_along(other.epoch, now, head.epoch, seconds):
                        group.append(other.label)
                    else:
                        rest.append(other)
                pending = rest
                print(f"{after['now']}  {after['mode']} clock of {', '.join(group)} (+{format_duration(seconds)})")
            if real:
                raise CliError(f"{', '.join(real)}: a real-time clock cannot be moved")
            return 0

    return asyncio.run(run())


def _moved_along(before: float, now: float, head_before: float, seconds: float) -> bool:
    if seconds > 0:
        return now - before >= seconds - 1e-3
    return before == head_before


def cmd_clock_show(args: argparse.Namespace) -> int:
    async def run() -> list[Target]:
        async with aiohttp.ClientSession() as session:
            return await _clock_targets(args, session)

    rows = []
    for target in asyncio.run(run()):
        health, clock = target.health, target.health["clock"]
        mode = f"scaled x{clock['scale']:g}" if clock["mode"] == "scaled" else clock["mode"]
        rows.append([target.label, clock["now"], mode, str(health["busy"]), health.get("nextDue") or "-",
                     str(health.get("pendingTimers", "-"))])
    print(render_table(["SERVICE", "NOW", "MODE", "BUSY", "NEXT DUE", "TIMERS"], rows))
    return 0


# --- journal ----------------------------------------------------------------------
def cmd_journal(args: argparse.Namespace) -> int:
    label, url = _target(args)
    if args.since < 0 or not 1 <= args.limit <= 10000:
        raise CliError("--since must be >= 0 and --limit within 1..10000", EXIT_USAGE)

    async def run() -> int:
        since = args.since
        async with AdminClient(url, token=args.token) as admin:
            while True:
                page = await admin.journal(since, args.limit)
                if page["dropped"]:
                    print(f"caas-sim: {page['dropped']} entries of {label} were evicted before they could be read",
                          file=sys.stderr)
                for entry in page["entries"]:
                    print(format_entry(entry))
                since = page["next"]
                if len(page["entries"]) == args.limit:
                    continue  # more is waiting
                if not args.follow:
                    return 0
                sys.stdout.flush()
                await asyncio.sleep(FOLLOW_INTERVAL)

    return asyncio.run(run())


def format_entry(entry: dict) -> str:
    cols = [f"{entry['seq']:>6}", entry["vt"], f"{entry['kind']:<9}", f"{entry['direction']:<8}",
            f"{entry.get('method') or '-':<6}", entry.get("path") or "-", str(entry.get("status", "-"))]
    if entry.get("event"):
        cols.append(f"event={entry['event']}")
    if entry.get("ruleId"):
        cols.append(f"rule={entry['ruleId']}")
    if entry.get("violation"):
        cols.append(f"violation: {entry['violation']}")
    return " ".join(cols)


# --- demo and bench (written elsewhere; imported only when asked for) -----------
def cmd_demo(args: argparse.Namespace) -> int:
    return int(_optional("scenarios.demo", "the demo").main(seed=args.seed))


def cmd_bench_sim(args: argparse.Namespace) -> int:
    bench = _optional("scenarios.bench", "the benchmark")
    return int(bench.main(duration=parse_duration(args.duration), connections=args.connections))


def _optional(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise CliError(f"{what} is not available in this checkout ({module} is missing)") from None


if __name__ == "__main__":
    sys.exit(main())

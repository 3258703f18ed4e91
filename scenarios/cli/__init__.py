"""``caas-sim``: start the simulators and drive them from a shell.

``up`` and ``serve`` run services in this process; every other command speaks
the admin protocol over HTTP (``caas_sim.simulators.client``), so it works as well
against services started elsewhere, the core included (``--url``).
Expected failures (a service that is not running, a rule it rejects) end with
one line on stderr, never a traceback: exit 2 for usage errors, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import sys
import textwrap

from caas_sim import logs
from caas_sim.simulators.client import AdminError, AdminUnreachable
from caas_sim.simulators.kit.durations import parse_duration

from .. import stack as stack_mod
from . import audit, contracts, webhooks
from .common import (
    CORE_PORT,
    EXIT_USAGE,
    LOCALHOST,
    STATE_DEFAULT,
    TOKEN_ENV,
    UP_HINT,
    CliError,
    _clock_spec,
    _duration,
    _fail,
    _named,
    _Parser,
    _port,
    _positive,
    _profile_arg,
    _service_list,
    _url,
)
from .control import (
    cmd_clock_advance,
    cmd_clock_show,
    cmd_fault_add,
    cmd_fault_clear,
    cmd_fault_delete,
    cmd_fault_list,
    cmd_journal,
)
from .load import add_parser as add_load_parser
from .scenario import add_parser as add_scenario_parser
from .servers import DASHBOARD_OFFSET, cmd_serve, cmd_up, up_ports


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = None
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:  # argparse's own message names `caas-sim --help`, not the command's
            raise CliError(f"unrecognized arguments: {' '.join(extras)} (see `{_command_of(args)} --help`)",
                           EXIT_USAGE)
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


def _command_of(args: argparse.Namespace) -> str:
    """``caas-sim COMMAND [ACTION]`` as parsed: the help that lists what it takes."""
    words = [getattr(args, dest, None) for dest in ("command", "action", "kind")]
    return " ".join(["caas-sim", *(w for w in words if isinstance(w, str))])


def _version() -> str:
    try:
        return importlib.metadata.version("caas-sim")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


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
    parser.add_argument("--version", action="version", version=f"caas-sim {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    server = _Parser(add_help=False)
    server.add_argument("--seed", type=int, default=0, help="seed of every RNG and fleet (default 0)")
    server.add_argument("--log-format", choices=logs.FORMATS, default=os.environ.get("CAAS_LOG_FORMAT", "text"),
                        help="text or json lines, with the correlation id on each (default text; $CAAS_LOG_FORMAT)")
    server.add_argument("--log-level", type=str.upper, choices=logs.LEVELS,
                        default=os.environ.get("CAAS_LOG_LEVEL", "INFO").upper(),
                        help="least severe level logged (default INFO; $CAAS_LOG_LEVEL)")
    server.add_argument("--access-log", action="store_true", default=os.environ.get("CAAS_LOG_ACCESS") == "1",
                        help="one line per request on the caas.access logger ($CAAS_LOG_ACCESS=1)")
    server.add_argument("--clock", type=_clock_spec, default="virtual", metavar="real|virtual|scaled:N",
                        help="virtual: moves only when told (default); scaled:N: N virtual seconds per real "
                             "second; real: wall time")
    server.add_argument("--host", default=LOCALHOST,
                        help=f"interface to bind (default {LOCALHOST}); any other needs --admin-token")
    server.add_argument("--admin-token", default=os.environ.get(TOKEN_ENV), metavar="T",
                        help="require `Authorization: Bearer T` on admin routes")

    offsets = textwrap.fill(", ".join(f"{name} +{port}" for name, port in sorted(
        {**up_ports([*stack_mod.SERVICES], 0), "dashboard": DASHBOARD_OFFSET}.items(), key=lambda item: item[1])), 96)
    up = commands.add_parser("up", parents=[server], formatter_class=fmt,
                             help="start every simulator and the reference core (or yours) on one clock",
                             description="Start the simulators and the reference core in one process on one "
                                         "shared clock, each on its default port, until Ctrl-C or SIGTERM. "
                                         "With --no-core, a webhook sink stands in for the core; with "
                                         "--core-url, the simulators send their webhooks to your core.",
                             epilog="ports: --port-base N (default 8000) plus each service's offset:\n"
                                    f"{offsets}.\n\n"
                                    "webhooks: every simulator that sends them signs them (Standard Webhooks) "
                                    "with a whsec_ secret,\nthe development secret unless --secret says "
                                    "otherwise; the start table lists targets and secrets,\nand `caas-sim "
                                    "secrets` prints them as CAAS_SIM_<SERVICE>_WEBHOOK_SECRET lines.\n\n"
                                    "examples:\n"
                                    "  caas-sim up --core-url http://127.0.0.1:9000      your core receives "
                                    "the webhooks\n"
                                    "  caas-sim up --core-url http://127.0.0.1:9000 --secret whsec_... "
                                    "--port-base 18000\n"
                                    "  caas-sim up --no-core --webhook-url iot=http://127.0.0.1:9000/ota")
    up.add_argument("--services", type=_service_list, metavar="NAME,...",
                    help=f"only these (default: every available one of {', '.join(stack_mod.SERVICES)})")
    up.add_argument("--no-core", action="store_true",
                    help="simulators only; their webhooks go to a sink standing in for the core")
    up.add_argument("--core-url", type=_url, metavar="URL",
                    help="your core, at this base URL: simulators only (no reference core, no sink), each "
                         "sending its webhooks to URL plus its receiver path in contracts/core.yaml "
                         "(iot: /caas/webhooks/ota-status, payments: /caas/webhooks/payments, ...)")
    up.add_argument("--webhook-url", type=webhooks.webhook_target, action="append", default=[],
                    metavar="SERVICE=URL",
                    help="send SERVICE's webhooks to this URL (path included) instead (repeatable; with or "
                         "without --core-url)")
    up.add_argument("--secret", type=webhooks.secret_arg, action="append", default=[],
                    metavar="[SERVICE=]whsec_...",
                    help="sign webhooks with this Standard Webhooks secret: SERVICE's, or with no SERVICE "
                         "every service's (repeatable; default: the development secret). The reference core "
                         "is given the same")
    up.add_argument("--database", metavar="URL", default=None,
                    help="the core's database (default: $CAAS_DATABASE_URL or sqlite caas.db here)")
    ports = up.add_mutually_exclusive_group()
    ports.add_argument("--port-base", type=_port_base, metavar="N",
                       help="every service on N plus its usual offset (see below; default 8000: the "
                            "default ports)")
    ports.add_argument("--ephemeral", action="store_true",
                       help="every service on a free port (printed at start) instead of its default one")
    up.add_argument("--faults", type=_profile_arg, nargs="+", action="extend", default=[],
                    metavar="SERVICE=PROFILE", help="load a fault profile into a service at start: a file, or the name "
                         "of one the service ships with (iot=flaky-network)")
    up.add_argument("--no-dashboard", action="store_true",
                    help="serve no dashboard (by default one listens on the port base plus 190, 8190: services, "
                         "clock, fault rules and journals, live)")
    up.add_argument("--state-file", metavar="PATH",
                    help=f"where to record the service table, webhook targets and secrets, for the clock, "
                         f"fault, journal and secrets commands (default: {STATE_DEFAULT}; owner-only; removed "
                         f"at exit)")
    up.set_defaults(handler=cmd_up)

    serve = commands.add_parser("serve", parents=[server], formatter_class=fmt,
                                help="start one simulator alone",
                                description="Start one simulator (no webhook sink) until Ctrl-C or SIGTERM.")
    serve.add_argument("name", type=_named, metavar="NAME",
                       help=f"core, or one of {', '.join(stack_mod.SERVICES)}")
    serve.add_argument("--port", type=_port, help="port to listen on (default: the service's own)")
    serve.add_argument("--faults", metavar="PROFILE", help="load a fault profile at start: a file, or the name of "
                       "one the service ships with (e.g. iot: flaky-network)")
    serve.add_argument("--webhook-url", type=_url, metavar="URL",
                       help="deliver every webhook of the service to this URL (default: the core's endpoint "
                            "for it on 127.0.0.1:8000, as the service catalogue names it)")
    serve.add_argument("--secret", type=webhooks.check_secret, metavar="whsec_...",
                       help="a simulator's: sign its webhooks with this Standard Webhooks secret (default: the "
                            "development secret)")
    serve.add_argument("--workers", type=_positive, default=1, metavar="N",
                       help="core only: N processes on one port and one PostgreSQL (default 1)")
    serve.add_argument("--database", metavar="URL", default=None,
                       help="core only: its database (default: $CAAS_DATABASE_URL or sqlite caas.db here)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(handler=cmd_serve)

    admin_state = _Parser(add_help=False)
    admin_state.add_argument("--state-file", metavar="PATH",
                             help=f"the service table of a running `caas-sim up` (default: {STATE_DEFAULT})")
    admin = _Parser(add_help=False, parents=[admin_state])
    admin.add_argument("--token", default=os.environ.get(TOKEN_ENV), help="admin token of the service")
    target = _Parser(add_help=False, parents=[admin])
    target.add_argument("service", nargs="?", metavar="SERVICE",
                        help="a simulator name (the core keeps no journal and no fault rules): in the running "
                             "`caas-sim up`, else on its default port on 127.0.0.1")
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
                                description="Show or move clocks. Without --service or --url: every service "
                                            "of the running `caas-sim up`, the core included (its state "
                                            "file), else every simulator answering on its default port.")
    clocks = clock.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_ClockParser)
    chosen = _Parser(add_help=False, parents=[admin])
    which = chosen.add_mutually_exclusive_group()
    which.add_argument("--service", action="append", type=_named, metavar="NAME",
                       help="a service of the running `caas-sim up`, else on its default port (repeatable)")
    which.add_argument("--url", action="append", type=_url, metavar="URL", help="a service's base URL (repeatable)")
    advance = clocks.add_parser("advance", parents=[chosen], formatter_class=fmt,
                                help="move forward by a duration, event by event",
                                description="Move clocks forward by DURATION, together and event by event: "
                                            "every clock reaches the next instant something is due, then "
                                            "each service runs what is due there (the core's jobs "
                                            "included) and settles, until DURATION has passed.")
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

    audit.add_parser(commands, [admin])
    contracts.add_parser(commands)
    webhooks.add_parser(commands, [admin_state], fmt)

    add_scenario_parser(commands, fmt)

    demo = commands.add_parser("demo", help="run the scenario catalogue, print the summary, write the report")
    demo.add_argument("--seed", type=int, default=None, help="override every scenario's seed")
    demo.add_argument("--report", default="build/scenarios", metavar="DIR",
                      help="where report.md and junit.xml go (default build/scenarios)")
    demo.add_argument("--jobs", "-j", type=_positive, default=None, help="scenarios at a time (default: CPU count)")
    demo.set_defaults(handler=cmd_demo)

    add_load_parser(commands, fmt)

    bench = commands.add_parser("bench", formatter_class=fmt, help="measure throughput against bare aiohttp",
                                description="Measure, in one run, against bare aiohttp baselines: webhook "
                                            "ingestion of one core process (target 0.5), ingestion plus processing "
                                            "(0.25) and processing against ingestion (0.5), every simulator's main operations against an echo (0.7; p99 "
                                            "at half capacity <= 10 ms), OTA activations end to end against the "
                                            "ceiling HTTP alone sets (0.5), and two core processes on PostgreSQL "
                                            "against one (1.3x); with --memory, the IoT simulator's bytes per vehicle "
                                            "(500). Exit 1 when a target is missed.")
    bench.add_argument("which", nargs="?", default="all", choices=["all", "webhooks", "sim", "ota", "scaleout"],
                       help="one measure only (default: all)")
    bench.add_argument("--duration", type=_positive_duration, default="5s",
                       help="how long each round loads (default 5s)")
    bench.add_argument("--connections", type=_positive, default=32, help="concurrent connections (default 32)")
    bench.add_argument("--rounds", type=_positive, default=3, help="alternating rounds per variant (default 3)")
    bench.add_argument("--postgres", default=os.environ.get("CAAS_BENCH_POSTGRES", "postgresql+asyncpg://postgres@"
                                                            "127.0.0.1:5432/test"),
                       help="PostgreSQL server (a throw-away database is created there) for ota and scaleout")
    bench.add_argument("--purchases", type=int, default=1000, help="purchases of the ota measure (default 1000)")
    bench.add_argument("--only", metavar="TEXT", help="sim: only the operations whose name holds TEXT "
                                                      "(e.g. 'iot', 'registry-es')")
    bench.add_argument("--memory", action="store_true", help="sim: also the IoT simulator's bytes per touched "
                                                             "vehicle after 100,000 activations (target 500)")
    bench.add_argument("--held", type=_count, default=20_000, metavar="N",
                       help="sim: requests each simulator answers before its p99 is measured, so that what it "
                            "keeps weighs on it (default 20,000)")
    bench.add_argument("--wiremock", metavar="JAR", default=os.environ.get("CAAS_BENCH_WIREMOCK"),
                       help="sim: also each operation answered by WireMock (a wiremock-standalone-3.x.jar, "
                            "`make wiremock` fetches one; java on PATH) from the same contract, the simulator "
                            "reported against it (default $CAAS_BENCH_WIREMOCK)")
    bench.add_argument("--instructions", action="store_true",
                       help="sim: also each line in instructions per request, counted by valgrind's callgrind "
                            "(the same figure on a busy machine; valgrind on PATH; minutes per server)")
    bench.set_defaults(handler=cmd_bench)
    return parser


class _ClockParser(_Parser):
    """argparse takes ``-3d`` for an option and would say DURATION is missing."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        backward = next((a for a in args or [] if re.match(r"-\.?\d", a)), None)
        if backward:
            raise CliError(f"the clock never moves backward: {backward!r} (give a positive duration)", EXIT_USAGE)
        return super().parse_known_args(args, namespace)


def _positive_duration(value: str) -> str:
    if parse_duration(_duration(value)) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive duration: {value!r}")
    return value


def _count(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"not a count: {value!r} (a whole number, 0 or more)")
    return int(value)


def _port_base(value: str) -> int:
    top = 65535 - (stack_mod.SINK_PORT - CORE_PORT)
    if not value.isdigit() or not 1 <= int(value) <= top:
        raise argparse.ArgumentTypeError(f"not a port base: {value!r} (1-{top}: every service's port, up to "
                                         f"the sink's N+{stack_mod.SINK_PORT - CORE_PORT}, must be a TCP port)")
    return int(value)


def cmd_demo(args: argparse.Namespace) -> int:
    from .. import demo  # imported when asked for: it pulls in the whole stack

    return int(demo.main(seed=args.seed, report_dir=args.report, jobs=args.jobs))


def cmd_bench(args: argparse.Namespace) -> int:
    from .. import bench
    from ..bench_instructions import missing_tools

    if args.instructions and (missing := missing_tools()):
        raise CliError(f"bench --instructions: {', '.join(missing)} not on PATH (Debian: apt-get install valgrind)",
                       EXIT_USAGE)
    return int(bench.main(args.which, duration=parse_duration(args.duration), connections=args.connections,
                          rounds=args.rounds, postgres=args.postgres, purchases=args.purchases,
                          only=args.only, memory=args.memory, wiremock=args.wiremock, held=args.held,
                          instructions=args.instructions))

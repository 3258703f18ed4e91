"""``caas-sim load KIND``: a headless locust run against a core, with SLOs and a report;
``caas-sim load compare A B``: two reports side by side.

Starts the stack (the reference core wired to the IoT, payments, VSS and factory
simulators, in this process, on ephemeral ports) unless ``--target`` names a running core,
whoever wrote it: what the load needs to know about that core (receiver paths, secrets,
keys, vehicles, the purchase's shape) comes from ``--config`` and the options, with the
reference core's values as defaults (``caas_sim.loadtests.target``). An unreachable target
stops the run before it starts; one that answers only errors stops it within
``--fail-fast``. Locust runs headless as a subprocess (``load_locust``), its output in the
report's ``locust.log``; with ``ota-callbacks`` the simulator's journal is read meanwhile
(``load_deliveries``). The figures are
printed (HTTP requests apart from business metrics), judged against the SLOs, and written
to ``--report`` (``load_report``). Exit 1 when an SLO is missed, the run was stopped, the
locustfile raised, or an audit found a violation; 130 when Ctrl-C stopped it (the report
keeps what it measured until then).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from caas_sim.loadtests import target as target_mod
from caas_sim.simulators.client import AdminError, AdminUnreachable
from caas_sim.simulators.kit.durations import parse_duration

from .. import peer_audit
from ..scenario.coordinator import absent
from . import load_report
from .audit import fetch as fetch_audit
from .audit import render as render_audit
from .common import (
    EXIT_USAGE,
    CliError,
    _clock_spec,
    _duration,
    _Parser,
    _url,
    report_folder,
    running_up,
)
from .load_deliveries import ANSWER, LAG, DeliveryWatch
from .load_locust import (
    KINDS,
    BackgroundStack,
    locust_commands,
    reachable,
    require_locust,
    run_locust,
)
from .webhooks import secret_arg

SECRET_OPTIONS = ("--secret", "--admin-token", "--api-key", "--dealership-key")


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError(f"not a share: {value!r} (a number from 0 to 1)")
    return share


def _positive(kind):
    def parse(value: str):
        try:
            number = kind(value)
        except ValueError:
            number = 0
        if number <= 0:
            raise argparse.ArgumentTypeError(f"not a positive {'integer' if kind is int else 'number'}: {value!r}")
        return number
    return parse


def _receiver(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or name not in target_mod.SENT_WEBHOOKS or not path.startswith("/"):
        raise argparse.ArgumentTypeError(f"expected SENDER=/path with SENDER one of "
                                         f"{', '.join(target_mod.SENT_WEBHOOKS)}, got {value!r}")
    return name, path


def _senders(value: str) -> tuple[str, ...]:
    senders = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in senders if name not in target_mod.SENT_WEBHOOKS]
    if unknown or not senders:
        raise argparse.ArgumentTypeError(f"expected senders among {', '.join(target_mod.SENT_WEBHOOKS)}, "
                                         f"got {value!r}")
    return senders


def _vehicles(value: str) -> tuple[int, int]:
    first, sep, end = value.partition(":")
    if not (sep and first.isdigit() and end.isdigit() and int(end) - int(first) >= 16):
        raise argparse.ArgumentTypeError(f"expected FIRST:END fleet indexes, at least 16 apart, got {value!r}")
    return int(first), int(end) - int(first)


def add_parser(commands, fmt) -> None:
    load = commands.add_parser(
        "load", formatter_class=fmt, help="load-test a core with locust (headless), with SLOs and a report",
        description="Run a locust scenario headless against a core (started here, or --target), judge it against "
                    "SLOs and write a report; or compare two reports.",
        epilog="examples:\n"
               "  caas-sim load webhooks --users 50 --duration 60s --slo-p95-ms 50\n"
               "  caas-sim load ota --users 20 --duration 2m --fault-rate 0.1 --processes 2\n"
               "  caas-sim load webhooks --target http://core.internal:8000 --config core.toml --report runs/today\n"
               "  caas-sim load ota-callbacks --target http://core.internal:8000 --receiver iot=/hooks/ota\n"
               "  caas-sim load compare runs/yesterday runs/today")
    kinds = load.add_subparsers(dest="kind", metavar="KIND", required=True)
    run = _Parser(add_help=False)
    o = run.add_argument_group("the load")
    o.add_argument("--users", type=_positive(int), default=10, help="concurrent users (day: at the peak hour; "
                                                                     "default 10)")
    o.add_argument("--spawn-rate", type=_positive(float), default=None,
                   help="users started per second (default: all at once)")
    o.add_argument("--duration", type=_duration, default="30s", help="how long (day: the length of the day; "
                                                                      "default 30s)")
    o.add_argument("--processes", type=int, choices=range(1, 17), default=1, metavar="1-16",
                   help="locust processes here: 1 (default), or a master and N-1 workers")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--fault-rate", type=_share, default=0.0,
                   help="share of OTA attempts failing on the IoT simulator (ota, ota-callbacks, day)")
    o.add_argument("--duplicate-share", type=_share, default=0.05, help="webhooks delivered twice (default 0.05)")
    o.add_argument("--reorder-share", type=_share, default=None,
                   help="webhooks delivered out of order (webhooks, day; default 0.05)")
    o.add_argument("--fail-fast", type=_duration, default="5s",
                   help="stop (exit 1) when every request of this first stretch failed; 0: never (default 5s)")
    t = run.add_argument_group("the core under test")
    t.add_argument("--target", type=_url, help="a running core's URL; nothing is started but what the kind needs")
    t.add_argument("--config", metavar="FILE", help="TOML description of the target: receivers, secrets, keys, "
                                                    "vehicles, purchase (docs/load-testing.md)")
    t.add_argument("--receiver", type=_receiver, action="append", default=[], metavar="SENDER=PATH",
                   help="the target's receiver path for a sender's webhooks (iot, payments, factory); repeatable")
    t.add_argument("--senders", type=_senders, metavar="SENDER,...",
                   help="the senders whose webhooks `webhooks` sends (default iot,payments,factory): leave out one "
                        "the target does not receive")
    t.add_argument("--secret", type=secret_arg, action="append", default=[], metavar="[SENDER=]whsec_...",
                   help="the secret the target verifies webhooks with (every sender, or one); repeatable")
    t.add_argument("--api-key", help="the customer key (default dev-customer)")
    t.add_argument("--customer", help="that key's customer id (default c-1)")
    t.add_argument("--dealership-key", help="the dealership key that registers sales (default dev-dealership)")
    t.add_argument("--vehicles", type=_vehicles, metavar="FIRST:END",
                   help="the fleet's vehicle indexes the run may use (default 10000:1010000)")
    t.add_argument("--iot-url", type=_url, help="with --target: the IoT simulator, for --fault-rate and --peers")
    t.add_argument("--payments-url", type=_url, help="with --target and --peers: the payment gateway simulator")
    t.add_argument("--admin-token", default=None, help="with --target: the core's admin token, for the audit")
    t.add_argument("--db", help="the started core's database URL (default: a throw-away SQLite file)")
    t.add_argument("--clock", type=_clock_spec, default=None, help="the started stack's clock: real, scaled:N (default: webhooks "
                                                 "real, the others scaled:60)")
    r = run.add_argument_group("verdict and report")
    r.add_argument("--report", default="load-report", help="folder of the report (default load-report)")
    r.add_argument("--slo-p95-ms", type=_positive(float), default=None,
                   help="fail when an HTTP request's p95 latency exceeds this")
    r.add_argument("--slo-error-ratio", type=_share, default=0.01,
                   help="fail above this HTTP error ratio, or business metric failure ratio (default 0.01)")
    r.add_argument("--slo-activation-p95", type=_duration, metavar="DURATION",
                   help="fail when purchase to ACTIVE takes longer at p95, on the core's clock (ota, day)")
    r.add_argument("--slo-delivery-p95", type=_duration, metavar="DURATION",
                   help="fail when a callback's delivery lag exceeds this at p95, on the simulator's clock "
                        "(ota-callbacks)")
    r.add_argument("--no-audit", action="store_true",
                   help="skip the invariant audit of the core after the load (exit 1 on a violation)")
    r.add_argument("--peers", action="store_true",
                   help="also audit from the simulators' side after the load (`caas-sim audit --peers`; with "
                        "--target, the --iot-url and --payments-url given, else the running `caas-sim up`'s); "
                        "exit 1 on a violation")
    for kind, (_, _, help_text) in KINDS.items():
        kinds.add_parser(kind, parents=[run], formatter_class=fmt, help=help_text,
                         description=help_text).set_defaults(handler=cmd_load)
    compare = kinds.add_parser("compare", help="print the differences between two reports",
                               description="Compare two load reports (folders `--report` wrote, or their "
                                           "summary.json): each figure in A and B, its change, and which got worse.")
    compare.add_argument("a", help="the baseline report")
    compare.add_argument("b", help="the report to judge against it")
    compare.add_argument("--threshold", type=_share, default=0.1,
                         help="a change worse than this share counts as a regression (default 0.1)")
    compare.add_argument("--fail-on-regression", action="store_true", help="exit 1 when a figure regressed")
    compare.set_defaults(handler=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    a, b = load_report.read(args.a), load_report.read(args.b)
    if a["run"]["kind"] != b["run"]["kind"]:
        print(f"caas-sim: note: comparing a `{a['run']['kind']}` run with a `{b['run']['kind']}` run",
              file=sys.stderr)
    table, worse = load_report.compare(a, b, args.threshold)
    print(f"A: {args.a} ({a['machine']['at']}, {a['run']['target']})\nB: {args.b} ({b['machine']['at']}, "
          f"{b['run']['target']})\n\n{table}\n")
    print(f"{len(worse)} figure(s) worse by more than {args.threshold:.0%}: {', '.join(worse)}" if worse
          else f"no figure worse by more than {args.threshold:.0%}")
    return 1 if worse and args.fail_on_regression else 0


# --- the run -----------------------------------------------------------------------------
def resolve_target(args: argparse.Namespace) -> target_mod.LoadTarget:
    if not args.target and (args.config or args.receiver):
        raise CliError("--config and --receiver describe a --target; the core started here is the reference "
                       "core", EXIT_USAGE)
    secrets: dict[str | None, str] = {}
    for sender, secret in args.secret:
        secrets[sender] = secret
    try:
        return target_mod.load(args.config).with_overrides(
            receivers=dict(args.receiver), secrets=secrets, vehicles=args.vehicles,
            keys={"customer": args.api_key, "customer_id": args.customer, "dealership": args.dealership_key},
            senders=args.senders)
    except target_mod.TargetError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def check_combinations(args: argparse.Namespace) -> None:
    if args.kind == "ota-callbacks":
        if args.iot_url:
            raise CliError("ota-callbacks starts its own IoT simulator, aimed at the target's receiver: "
                           "no --iot-url", EXIT_USAGE)
        if args.peers:
            raise CliError("--peers audits payments against vehicles; ota-callbacks takes no payment", EXIT_USAGE)
    if args.reorder_share is not None and args.kind not in ("webhooks", "day"):
        raise CliError(f"--reorder-share is for webhooks and day; the simulators' own callbacks ({args.kind}) "
                       "come in the order their vehicles answer", EXIT_USAGE)
    if not args.target and (args.iot_url or args.payments_url or args.admin_token):
        raise CliError("--iot-url, --payments-url and --admin-token go with --target", EXIT_USAGE)
    if args.target and (args.db or (args.clock and args.kind != "ota-callbacks")):
        raise CliError("--db and --clock are for the stack started here; a --target runs its own", EXIT_USAGE)
    if args.target and args.fault_rate and args.kind in ("ota", "day") and not args.iot_url:
        raise CliError("--fault-rate sets faults on the IoT simulator the target calls: give its --iot-url",
                       EXIT_USAGE)
    if parse_duration(args.duration) <= 0:
        raise CliError("--duration must be more than 0", EXIT_USAGE)


def locate_peers(args: argparse.Namespace) -> None:
    """``--peers`` with ``--target``: the simulators the target calls, as given, else those of the
    running `caas-sim up` (as `caas-sim audit --peers` finds them); refused before the load
    when neither says where one is."""
    if not (args.target and args.peers) or args.kind == "ota-callbacks":
        return
    up = running_up(args) or {}
    args.iot_url = args.iot_url or up.get("iot")
    args.payments_url = args.payments_url or up.get("payments")
    if not (args.iot_url and args.payments_url):
        raise CliError("--peers audits the simulators the target calls: give --iot-url and --payments-url, or run "
                       "them with `caas-sim up --core-url`", EXIT_USAGE)


def cmd_load(args: argparse.Namespace) -> int:
    check_combinations(args)
    require_locust()
    locate_peers(args)
    target = resolve_target(args)
    seconds = parse_duration(args.duration)
    report = report_folder(args.report)  # before the run: it wrote there only at the end
    for target_url, what in ((args.target, "the target"), (args.iot_url, "the IoT simulator"),
                             (args.payments_url, "the payment gateway")):
        if target_url:
            reachable(target_url, what)
    scratch_dir = tempfile.TemporaryDirectory(prefix="caas-load-")
    scratch = Path(scratch_dir.name)
    # The description locust reads holds the secrets: in the owner-only scratch folder, never the report.
    (scratch / "target.json").write_text(target.model_dump_json())
    stack = watch = None
    try:
        payments_url, iot_url, core_url, started = args.payments_url, args.iot_url, args.target, None
        if args.kind == "ota-callbacks" or not args.target:
            database = None if args.target else (args.db or f"sqlite+aiosqlite:///{scratch}/caas.db")
            stack = BackgroundStack(args, target, database)
            stack.start()
            iot_url = stack.stack.url("iot")
            if not args.target:
                core_url, payments_url = stack.stack.url("core"), stack.stack.url("payments")
                started = f"the reference core ({_safe(database)}), clock {stack.clock}"
            else:
                started = f"an IoT simulator calling back {core_url}{target.receivers['iot'].path}, clock {stack.clock}"
            print(f"started {started}", flush=True)
        host = iot_url if args.kind == "ota-callbacks" else core_url
        if args.kind == "ota-callbacks":
            watch = DeliveryWatch(iot_url).start()
        commands = locust_commands(args, host, iot_url, report, scratch, seconds)
        print(f"locust: {args.kind} against {host}, {args.users} users, {seconds:g} s, "
              f"{'1 process' if len(commands) == 1 else f'master + {len(commands) - 1} workers'}; "
              f"its log: {report / 'locust.log'}", flush=True)
        code, interrupted = run_locust(commands, seconds, report)
        deliveries = watch.stop() if watch else None
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        located = _read_locust(scratch / "locust.json", code, report)
        if interrupted:  # no audit then: the user wants out; the verdict is "stopped", never "passed"
            located["aborted"] = located.get("aborted") or INTERRUPTED
        audit = peers = None
        notes: list[str] = []
        if not located.get("aborted"):
            audit = None if args.no_audit else settled_audit(core_url, args.admin_token)
            run_peers = args.peers
            if isinstance(audit, AdminError) and absent(audit):  # a core that does not serve the audit
                run_peers = run_peers or bool(payments_url and iot_url and args.kind != "ota-callbacks")
                notes.append(f"the core at {core_url} serves no /__admin/audit: its invariant audit was not "
                             "available" + ("; the peers' audit (the simulators' side) runs instead" if run_peers
                                            else ""))
                audit = None
            peers = peers_audit(payments_url, iot_url, args.admin_token) if run_peers else None
    finally:
        if watch is not None:  # stopping twice is harmless
            watch.stop()
        if stack is not None:
            stack.stop()
        scratch_dir.cleanup()
    summary = _summary(args, target, located, deliveries, core_url, started, seconds)
    slos = load_report.judge(summary, p95_ms=args.slo_p95_ms, error_ratio_max=args.slo_error_ratio,
                             metric_p95=_metric_bounds(args))
    summary["slos"] = [vars(s) for s in slos]
    summary["notes"] = notes
    verdicts = _verdicts(summary, slos, audit, peers)
    summary["passed"] = not verdicts
    load_report.write(report, summary)
    _print(summary, slos, stack is not None and not args.target, rss)
    print(f"report: {report}/summary.md, figures.csv, summary.json and report.html (locust's)")
    for line in [*notes, *verdicts]:
        print(f"caas-sim: {line}", file=sys.stderr)
    if interrupted:
        return EXIT_INTERRUPTED
    return 1 if verdicts else 0


def _metric_bounds(args: argparse.Namespace) -> dict[str, float]:
    bounds = {}
    if args.slo_activation_p95:
        bounds["activation (core clock)"] = parse_duration(args.slo_activation_p95) * 1000
    if args.slo_delivery_p95:
        bounds[LAG] = parse_duration(args.slo_delivery_p95) * 1000
    return bounds


#: Ctrl-C (SIGINT), as shells report it: 128 + 2.
EXIT_INTERRUPTED = 130
INTERRUPTED = "the run was interrupted (Ctrl-C): the figures are those of the part that ran, unjudged by any audit"


def _read_locust(path: Path, code: int, report: Path) -> dict:
    if not path.exists():
        tail = "".join((report / "locust.log").read_text(errors="replace").splitlines(True)[-15:]) \
            if (report / "locust.log").exists() else ""
        raise CliError(f"locust ended (exit code {code}) without its figures; the end of {report}/locust.log:\n{tail}")
    return json.loads(path.read_text())


def _summary(args, target, located: dict, deliveries, core_url, started, seconds) -> dict:
    summary = {**located, "run": {"kind": args.kind, "target": core_url, "started": started, "users": args.users,
                                  "seconds": seconds, "processes": args.processes, "command": _command()},
               "machine": load_report.machine(), "target": target.public(),
               "raised": _exceptions(Path(args.report) / "locust_exceptions.csv")}
    cut = {f"{name}: still awaited at the end": n for name, n in located.get("unfinished", {}).items()}
    if cut:
        summary["counts"] = cut
    if deliveries is not None:
        summary["metrics"] = summary["metrics"] + [
            load_report.metric_row(ANSWER, "wall", deliveries.answers_ms, deliveries.failed_attempts),
            load_report.metric_row(LAG, "simulator clock", deliveries.lags_ms(), deliveries.exhausted)]
        summary["counts"] = {**summary.get("counts", {}), **deliveries.counts()}
        if deliveries.error:
            summary["deliveriesError"] = deliveries.error
    return summary


def _verdicts(summary, slos, audit, peers) -> list[str]:
    """One line per reason the run failed (none: it passed); the audit's text into the summary."""
    failed = [f"SLO missed: {s.name}: {s.measured} (target {s.target})" for s in slos if not s.met]
    if summary.get("aborted"):
        failed.insert(0, summary["aborted"])
    failed += [f"the locustfile raised: {line}" for line in summary["raised"]]
    texts = []
    if isinstance(audit, Exception):
        failed.append(f"the core's invariant audit could not run: {audit} (--admin-token, or --no-audit)")
    elif audit is not None:
        texts.append(f"invariant audit of the core after the load:\n{render_audit(audit)}")
        failed += [] if audit["ok"] else ["the core's invariant audit found violations"]
    if isinstance(peers, Exception):
        failed.append(f"the peers' audit could not run: {peers}")
    elif peers is not None:
        texts.append(f"the peers' audit (the simulators' side) after the load:\n{render_audit(peers)}")
        failed += [] if peers["ok"] else ["the peers' audit found violations"]
    summary["auditText"] = "\n\n".join(texts) or None
    if summary.get("deliveriesError"):
        failed.append(f"the IoT simulator's journal could not be read: {summary['deliveriesError']}")
    return failed


def _print(summary: dict, slos, started_here: bool, rss: int) -> None:
    print(f"\nHTTP requests (wall clock):\n{load_report.http_table(summary)}")
    if summary["metrics"]:
        print(f"\nbusiness metrics (each on its clock):\n{load_report.metrics_table(summary)}")
    if summary.get("counts"):
        print("\n" + "\n".join(f"{name}: {value}" for name, value in summary["counts"].items()))
    print(f"\nSLOs:\n{load_report.slo_table(slos)}\n")
    if summary.get("auditText"):
        print(summary["auditText"] + "\n")
    if started_here:
        print(f"peak memory of this process (stack included): {rss} MB")


def _command() -> str:
    """This command line, with the values of secret options masked."""
    words, masked = sys.argv[1:], []
    hide = False
    for word in words:
        name, eq, _ = word.partition("=")
        if hide:
            masked.append("***")
        elif eq and name in SECRET_OPTIONS:
            masked.append(f"{name}=***")
        else:
            masked.append(word)
        hide = word in SECRET_OPTIONS
    return "caas-sim " + " ".join(shlex.quote(w) for w in masked)


def _exceptions(path: Path) -> list[str]:
    """What locust's users raised: errors of the locustfile itself, which its request
    statistics do not count."""
    if not path.exists():
        return []
    with path.open() as f:
        return [f"{row['Count']} x {row['Message']}" for row in csv.DictReader(f)]


def peers_audit(payments_url: str | None, iot_url: str | None, token: str | None) -> dict | Exception:
    if not payments_url or not iot_url:
        return CliError("--peers needs the simulators: with --target, give --iot-url and --payments-url")
    try:
        return asyncio.run(peer_audit.audit(payments_url, iot_url, token=token))
    except (AdminError, AdminUnreachable, aiohttp.ClientError, peer_audit.WrongService) as exc:
        return exc


def settled_audit(target: str, token: str | None, patience: float = 60.0) -> dict | Exception:
    """The core's invariant audit once the work the load left queued has run (or after
    ``patience`` real seconds, the report then saying what is still in flight); the error
    when the core would not answer it (no admin token, unreachable)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            report = asyncio.run(fetch_audit(target, token))
        except (AdminError, AdminUnreachable) as exc:
            return exc
        if report["settled"] or time.monotonic() > deadline:
            return report
        time.sleep(0.5)  # polling the core's queue: jobs due now run in real or scaled time


def _safe(url: str) -> str:
    from caas_core.store.db import safe_url

    return safe_url(url)

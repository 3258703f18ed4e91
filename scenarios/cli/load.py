"""``caas-sim load ota|webhooks|sales|day``: a headless locust run against the core, with SLOs.

Starts the stack (the core wired to the IoT, payments, VSS and factory simulators, in
this process, on ephemeral ports) unless ``--target`` names a running core, runs
locust headless as a subprocess (locust monkey-patches with gevent: it never runs in
this process), writes its CSV and HTML report into ``--report``, prints a summary and
exits 1 when an SLO is missed (p95 latency of every request and custom metric, and
the error ratio). ``--processes N`` runs a locust master and N-1 workers here; across
machines, start workers with ``locust -f loadtests/<kind>.py --worker --master-host``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from caas_sim.simulators.client import AdminError, AdminUnreachable
from caas_sim.simulators.kit.durations import parse_duration

from .. import peer_audit
from ..scenario.coordinator import absent
from .audit import fetch as fetch_audit
from .audit import render as render_audit
from .common import EXIT_USAGE, CliError, render_table

KINDS = ("ota", "webhooks", "sales", "day")
LOCUSTFILES = Path(__file__).resolve().parents[2] / "loadtests"
DEFAULT_CLOCK = {"ota": "scaled:60", "webhooks": "real", "sales": "scaled:60", "day": "scaled:60"}


def add_parser(commands, fmt) -> None:
    load = commands.add_parser(
        "load", formatter_class=fmt, help="load-test the core with locust (headless), with SLOs",
        description="Run a locust scenario headless against the core: `ota` (purchases to activation, "
                    "end-to-end latency), `webhooks` (signed callbacks, duplicates and reorderings), `sales` (sales "
                    "registered, reservations paid, factory orders placed), `day` "
                    "(a compressed day with peaks and month-end billing). Starts the stack unless --target.",
        epilog="examples:\n"
               "  caas-sim load webhooks --users 50 --duration 60s --slo-p95-ms 50\n"
               "  caas-sim load ota --users 20 --duration 2m --fault-rate 0.1 --processes 2\n"
               "  caas-sim load day --users 40 --duration 5m --db postgresql://postgres@127.0.0.1/caas\n"
               "  caas-sim load webhooks --target http://core.internal:8000 --users 200")
    load.add_argument("kind", choices=KINDS, help="the scenario (loadtests/<kind>.py)")
    load.add_argument("--users", type=int, default=10, help="concurrent users (day: at the peak hour; default 10)")
    load.add_argument("--spawn-rate", type=float, default=None, help="users started per second (default: all at once)")
    load.add_argument("--duration", default="30s", help="how long (day: the length of the day; default 30s)")
    load.add_argument("--processes", type=int, default=1,
                      help="locust processes here: 1 (default), or a master and N-1 workers")
    load.add_argument("--target", help="a running core's URL; nothing is started")
    load.add_argument("--iot-url", help="with --target: the IoT simulator, for --fault-rate")
    load.add_argument("--db", help="the started core's database URL (default: a throw-away SQLite file)")
    load.add_argument("--clock", default=None, help="the started stack's clock: real, scaled:N (default: ota, "
                                                    "sales and day scaled:60, webhooks real)")
    load.add_argument("--seed", type=int, default=0)
    load.add_argument("--fault-rate", type=float, default=0.0,
                      help="share of OTA attempts failing on the IoT simulator (ota, day)")
    load.add_argument("--duplicate-share", type=float, default=0.05, help="webhooks delivered twice (default 0.05)")
    load.add_argument("--reorder-share", type=float, default=0.05, help="webhooks delivered out of order")
    load.add_argument("--report", default="load-report", help="folder for locust's CSV and HTML (default load-report)")
    load.add_argument("--slo-p95-ms", type=float, default=None,
                      help="fail when a request's or metric's p95 latency exceeds this")
    load.add_argument("--slo-error-ratio", type=float, default=0.01, help="fail above this error ratio (default 0.01)")
    load.add_argument("--api-key", default="dev-customer", help="the customer key (with --target)")
    load.add_argument("--admin-token", default=None, help="with --target: the core's admin token, for the audit")
    load.add_argument("--no-audit", action="store_true",
                      help="skip the invariant audit of the core after the load (exit 1 on a violation)")
    load.add_argument("--peers", action="store_true",
                      help="also audit from the simulators' side after the load (`caas-sim audit --peers`; with "
                           "--target, give --iot-url and --payments-url); exit 1 on a violation")
    load.add_argument("--payments-url", help="with --target and --peers: the payment gateway simulator")
    load.add_argument("--dealership-key", default="dev-dealership",
                      help="the dealership key that registers sales (sales, day; with --target)")
    load.set_defaults(handler=cmd_load)


@dataclass
class Line:
    kind: str
    name: str
    requests: int
    failures: int
    median: float
    p95: float
    rps: float


def read_stats(path: Path) -> list[Line]:
    with path.open() as f:
        return [Line(row["Type"], row["Name"], int(row["Request Count"]), int(row["Failure Count"]),
                     float(row["Median Response Time"] or 0), float(row["95%"] if row["95%"] != "N/A" else 0),
                     float(row["Requests/s"] or 0)) for row in csv.DictReader(f)]


def read_exceptions(path: Path) -> list[str]:
    """What locust's users raised (``--csv``'s exceptions file): errors of the locustfile
    itself, which its request statistics do not count."""
    if not path.exists():
        return []
    with path.open() as f:
        return [f"{row['Count']} x {row['Message']}" for row in csv.DictReader(f)]


def check_slos(lines: list[Line], p95_ms: float | None, error_ratio: float) -> list[str]:
    missed = []
    total = next((line for line in lines if line.name == "Aggregated"), None)
    if total is None or total.requests == 0:
        return ["no request was made"]
    ratio = total.failures / total.requests
    if ratio > error_ratio:
        missed.append(f"error ratio {ratio:.4f} > {error_ratio:g}")
    if p95_ms is not None:
        missed += [f"p95 of {line.kind} {line.name} {line.p95:.0f} ms > {p95_ms:g} ms"
                   for line in lines if line.name != "Aggregated" and line.requests and line.p95 > p95_ms]
    return missed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BackgroundStack:
    """The stack on its own event loop in a thread of this process (locust is elsewhere)."""

    def __init__(self, args: argparse.Namespace, database: str) -> None:
        from .. import stack as stack_mod
        from .servers import DEVELOPMENT_KEYS

        clock = args.clock or DEFAULT_CLOCK[args.kind]
        self.stack = stack_mod.Stack(services=["iot", "payments", "vss", "factory"], seed=args.seed,
                                     clock=stack_mod.parse_clock(clock), with_sink=False,
                                     core={"database_url": database, "api_keys": DEVELOPMENT_KEYS})
        self.clock = clock
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="caas-stack", daemon=True)

    def start(self) -> None:
        from caas_core.store.db import DatabaseUnavailable

        self.thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.stack.start(), self.loop).result(timeout=60)
        except DatabaseUnavailable as exc:  # stopped by the caller, as on any failure
            raise CliError(f"the core cannot open its database: {exc}") from None

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.stack.stop(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def locust_commands(args: argparse.Namespace, target: str, iot_url: str | None, report: Path,
                    seconds: float) -> list[list[str]]:
    """The master's (or the only) command first, then the workers'."""
    locustfile = str(LOCUSTFILES / f"{args.kind}.py")
    custom = ["--caas-seed", str(args.seed), "--caas-fault-rate", str(args.fault_rate),
              "--caas-duplicate-share", str(args.duplicate_share), "--caas-reorder-share", str(args.reorder_share),
              "--caas-api-key", args.api_key]
    if iot_url:
        custom += ["--caas-iot-url", iot_url]
    if args.kind in ("sales", "day"):
        custom += ["--caas-dealership-key", args.dealership_key]
    if args.kind == "day":
        custom += ["--caas-day-length", str(seconds), "--caas-peak-users", str(args.users)]
    main = [sys.executable, "-m", "locust", "-f", locustfile, "--headless", "-H", target,
            "-u", str(args.users), "-r", str(args.spawn_rate or args.users), "-t", f"{max(1, round(seconds))}s",
            "--csv", str(report / args.kind), "--html", str(report / f"{args.kind}.html"),
            "--only-summary", "--stop-timeout", "10", "--exit-code-on-error", "0", *custom]
    if args.processes <= 1:
        return [main]
    port = _free_port()
    main += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
             "--expect-workers", str(args.processes - 1), "--expect-workers-max-wait", "60"]
    worker = [sys.executable, "-m", "locust", "-f", locustfile, "--worker", "--master-host", "127.0.0.1",
              "--master-port", str(port), *custom]
    return [main] + [worker] * (args.processes - 1)


def cmd_load(args: argparse.Namespace) -> int:
    if args.processes < 1 or args.users < 1:
        raise CliError("--processes and --users must be at least 1", EXIT_USAGE)
    seconds = parse_duration(args.duration)
    report = Path(args.report)
    report.mkdir(parents=True, exist_ok=True)
    stack = None
    scratch = tempfile.TemporaryDirectory(prefix="caas-load-")
    try:
        payments_url = args.payments_url
        if args.target:
            target, iot_url = args.target.rstrip("/"), args.iot_url
        else:
            database = args.db or f"sqlite+aiosqlite:///{scratch.name}/caas.db"
            stack = BackgroundStack(args, database)
            stack.start()
            target, iot_url = stack.stack.url("core"), stack.stack.url("iot")
            payments_url = stack.stack.url("payments")
            print(f"stack: core {target} ({_safe(database)}), iot {iot_url}, clock {stack.clock}", flush=True)
        commands = locust_commands(args, target, iot_url, report, seconds)
        print(f"locust: {args.kind}, {args.users} users, {seconds:g} s, "
              f"{'1 process' if len(commands) == 1 else f'master + {len(commands) - 1} workers'}", flush=True)
        code = _run_locust(commands, seconds)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        audit = None if args.no_audit else settled_audit(target, args.admin_token)
        run_peers = args.peers
        if isinstance(audit, AdminError) and absent(audit):  # a core that does not serve the audit
            audit, run_peers = None, run_peers or bool(payments_url and iot_url)
            print(f"the core at {target} has no /__admin/audit: its invariant audit is skipped; "
                  + ("the peers' audit (the simulators' side) runs instead" if run_peers else
                     "give --iot-url and --payments-url for the peers' audit (the simulators' side)"),
                  file=sys.stderr, flush=True)
        peers = peers_audit(payments_url, iot_url, args.admin_token) if run_peers else None
    finally:
        if stack is not None:
            stack.stop()
        scratch.cleanup()
    stats = report / f"{args.kind}_stats.csv"
    if not stats.exists():
        raise CliError(f"locust wrote no statistics (exit code {code}); see its output above")
    lines = read_stats(stats)
    print(render_table(["TYPE", "NAME", "REQUESTS", "FAILURES", "MEDIAN ms", "P95 ms", "REQ/S"],
                       [[line.kind, line.name, str(line.requests), str(line.failures), f"{line.median:.0f}",
                         f"{line.p95:.0f}", f"{line.rps:.1f}"] for line in lines]))
    if stack is not None:
        print(f"peak memory of this process (stack included): {rss} MB")
    print(f"report: {report}/{args.kind}.html and {report}/{args.kind}_*.csv")
    missed = check_slos(lines, args.slo_p95_ms, args.slo_error_ratio)
    for line in missed:
        print(f"SLO missed: {line}", file=sys.stderr)
    if not missed:
        print("SLOs met")
    raised = read_exceptions(report / f"{args.kind}_exceptions.csv")
    for line in raised:
        print(f"the locustfile raised: {line}", file=sys.stderr)
    if isinstance(audit, Exception):
        print(f"the core's invariant audit could not run: {audit} (--admin-token, or --no-audit)", file=sys.stderr)
        return 1
    if audit is not None:
        print(f"invariant audit of the core after the load:\n{render_audit(audit)}")
    if isinstance(peers, Exception):
        print(f"the peers' audit could not run: {peers}", file=sys.stderr)
        return 1
    if peers is not None:
        print(f"the peers' audit (the simulators' side) after the load:\n{render_audit(peers)}")
    failed = [report for report in (audit, peers) if report is not None and not report["ok"]]
    return 1 if missed or raised or failed else 0


def peers_audit(payments_url: str | None, iot_url: str | None, token: str | None) -> dict | Exception:
    if not payments_url or not iot_url:
        return CliError("--peers needs the simulators: with --target, give --iot-url and --payments-url")
    try:
        return asyncio.run(peer_audit.audit(payments_url, iot_url, token=token))
    except (AdminError, AdminUnreachable, aiohttp.ClientError) as exc:
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


def _run_locust(commands: list[list[str]], seconds: float) -> int:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    master = subprocess.Popen(commands[0], env=env)
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL) for command in commands[1:]]
    try:
        return master.wait(timeout=seconds + 180)
    except subprocess.TimeoutExpired:
        master.send_signal(signal.SIGINT)
        return master.wait(timeout=30)
    finally:
        deadline = time.monotonic() + 15
        for worker in workers:
            try:
                worker.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()

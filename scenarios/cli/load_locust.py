"""Running a load: the stack it needs started in this process, locust as subprocesses.

``KINDS`` is the table of the locustfiles (``loadtests/``) and the clock each one's stack
runs on. Locust monkey-patches with gevent, so it never runs in this process: it runs as
a master (and workers) whose output goes to the report's ``locust.log``, with a progress
line here every ``PROGRESS_EVERY`` seconds read from its stats history.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp

from caas_sim.loadtests import target as target_mod
from caas_sim.simulators.kit.durations import parse_duration

from .common import EXIT_USAGE, CliError

LOCUSTFILES = Path(__file__).resolve().parents[2] / "loadtests"
KINDS = {
    "ota": ("ota.py", "scaled:60", "service purchases followed to activation: end-to-end latency on the core's clock"),
    "ota-callbacks": ("ota_callbacks.py", "scaled:60", ("the IoT simulator's OTA callbacks at the core's receiver, "
                      "from a realistic fleet: acknowledgement times, delivery lag, retries (no purchase API needed)")),
    "webhooks": ("webhooks.py", "real", "signed factory, payment and OTA callbacks, with duplicates and reorderings"),
    "sales": ("sales.py", "scaled:60", "sales registered, reservations paid, factory orders placed"),
    "day": ("day.py", "scaled:60", "a compressed day with peaks and month-end billing"),
}
#: The stack started when there is no --target: the reference core and what it calls.
STACK_SERVICES = ["iot", "payments", "vss", "factory"]
PROGRESS_EVERY = 10.0  # seconds between two progress lines
#: Seconds locust is given to stop after SIGINT (its users' 10 s stop timeout, then its
#: reports), then after SIGTERM, before it is killed.
STOP_WAITS = (30.0, 10.0)

def reachable(url: str, what: str) -> None:
    """Any HTTP answer will do; no answer at all ends the run before it starts."""
    async def probe() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
                session.get(url.rstrip("/") + "/") as answer:
            await answer.read()

    try:
        asyncio.run(probe())
    except aiohttp.ClientResponseError as exc:  # something listens there, and it is not HTTP
        reason = " ".join(exc.message.split())  # aiohttp's parser error spans lines
        raise CliError(f"{what} {url} does not answer HTTP ({reason}): nothing was load-tested") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CliError(f"{what} {url} is unreachable ({reason}): nothing was load-tested") from None


class BackgroundStack:
    """The stack on its own event loop in a thread of this process (locust is elsewhere)."""

    def __init__(self, args: argparse.Namespace, target: target_mod.LoadTarget, database: str | None) -> None:
        from .. import stack as stack_mod
        from .servers import DEVELOPMENT_KEYS

        self.clock = args.clock or KINDS[args.kind][1]
        clock = stack_mod.parse_clock(self.clock)
        secrets = {name: r.secret for name, r in target.receivers.items()}
        if database is None:  # only the IoT simulator, calling back the --target
            iot = target.receivers["iot"]
            self.stack = stack_mod.Stack(services=["iot"], seed=args.seed, clock=clock, with_sink=False,
                                         webhook_urls={"iot": args.target.rstrip("/") + iot.path},
                                         webhook_secrets={"iot": iot.secret}, unique_webhook_ids=True)
        else:
            self.stack = stack_mod.Stack(services=STACK_SERVICES, seed=args.seed, clock=clock, with_sink=False,
                                         webhook_secrets=secrets,
                                         core={"database_url": database, "api_keys": DEVELOPMENT_KEYS})
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_locust() -> None:
    """Say at once that locust is missing (it is an extra of the package), not once the load started."""
    if importlib.util.find_spec("locust") is None:
        raise CliError("locust is not installed here: `caas-sim load` runs it; install it with "
                       "`pip install locust` (or the package's `load` extra: caas-sim[load])", EXIT_USAGE)


def locust_commands(args: argparse.Namespace, host: str, iot_url: str | None, report: Path, scratch: Path,
                    seconds: float) -> list[list[str]]:
    """The master's (or the only) command first, then the workers'."""
    locustfile = str(LOCUSTFILES / KINDS[args.kind][0])
    custom = ["--caas-config", str(scratch / "target.json"), "--caas-seed", str(args.seed),
              "--caas-fault-rate", str(args.fault_rate), "--caas-duplicate-share", str(args.duplicate_share),
              "--caas-reorder-share", str(0.05 if args.reorder_share is None else args.reorder_share)]
    if iot_url:
        custom += ["--caas-iot-url", iot_url]
    if args.kind == "day":
        custom += ["--caas-day-length", str(seconds), "--caas-peak-users", str(args.users)]
    main = [sys.executable, "-m", "locust", "-f", locustfile, "--headless", "-H", host,
            "-u", str(args.users), "-r", str(args.spawn_rate or args.users), "-t", f"{max(1, round(seconds))}s",
            "--csv", str(report / "locust"), "--html", str(report / "report.html"),
            "--only-summary", "--stop-timeout", "10", "--exit-code-on-error", "0", *custom,
            "--caas-fail-fast", str(parse_duration(args.fail_fast)), "--caas-summary", str(scratch / "locust.json")]
    if args.processes <= 1:
        return [main]
    port = _free_port()
    main += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
             "--expect-workers", str(args.processes - 1), "--expect-workers-max-wait", "60"]
    worker = [sys.executable, "-m", "locust", "-f", locustfile, "--worker", "--master-host", "127.0.0.1",
              "--master-port", str(port), *custom]
    return [main] + [worker] * (args.processes - 1)


def run_locust(commands: list[list[str]], seconds: float, report: Path) -> tuple[int, bool]:
    """Run locust, its output in ``report/locust.log``, a progress line every ten seconds; its
    exit code, and whether Ctrl-C stopped it (what it measured until then is kept)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with (report / "locust.log").open("wb") as log:
        master = subprocess.Popen(commands[0], env=env, stdout=log, stderr=subprocess.STDOUT)
        workers = [subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
                   for command in commands[1:]]
        started = time.monotonic()
        try:
            while True:
                try:
                    return master.wait(timeout=PROGRESS_EVERY), False
                except subprocess.TimeoutExpired:
                    if time.monotonic() - started > seconds + 180:
                        return stop(master), False
                    _progress(report / "locust_stats_history.csv", time.monotonic() - started, seconds)
        except KeyboardInterrupt:  # stop the run, keep what it measured: the caller says it was stopped
            return stop(master), True
        finally:
            deadline = time.monotonic() + 15
            for worker in workers:
                try:
                    worker.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    worker.kill()


def stop(master: subprocess.Popen) -> int:
    """Locust's exit code once it stopped on SIGINT; SIGTERM if it lingers, SIGKILL last. A
    Ctrl-C always ends the run: locust once took more than 30 s to stop, and the run ended
    in a traceback (exit 1) with no report."""
    master.send_signal(signal.SIGINT)
    for wait, then in zip(STOP_WAITS, (signal.SIGTERM, signal.SIGKILL), strict=True):
        try:
            return master.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            master.send_signal(then)
    return master.wait()


def _progress(history: Path, elapsed: float, seconds: float) -> None:
    try:
        with history.open() as f:
            last = [row for row in csv.DictReader(f) if row["Name"] == "Aggregated"][-1]
    except (OSError, IndexError, KeyError):
        return
    print(f"  {min(elapsed, seconds):.0f}/{seconds:.0f} s: {last['User Count']} users, "
          f"{last['Total Request Count']} requests and metrics, {last['Total Failure Count']} failed, "
          f"{float(last['Requests/s'] or 0):.0f}/s now", flush=True)

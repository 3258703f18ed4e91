"""`caas-sim audit`: the core's invariant audit (GET /__admin/audit), or with ``--peers`` the
simulators' side of it (``caas_sim.scenarios.peer_audit``), readable, with an exit code.

Exit 0 when every invariant holds, 1 on a violation (or an unreachable core). A core with
work still in flight is audited all the same, with a warning: settle it first (advance
the clocks) for a verdict that cannot change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter

from caas_sim.simulators.client import AdminClient

from .. import peer_audit
from .common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    CliError,
    _url,
    core_of_up,
    render_table,
    running_up,
    service_url,
)

DEFAULT_TARGET = "http://127.0.0.1:8000"


def add_parser(commands, parents: list[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser("audit", parents=parents, help="check the core's invariants (exit 1 on a violation)",
                                description="Ask a running core for its invariant audit (GET /__admin/audit): "
                                            "nothing lost, nothing twice, no charge without delivery, every "
                                            "failed settlement collected, money adds up per customer.")
    audit.add_argument("--target", type=_url, metavar="URL",
                       help="the core's base URL (default: the running `caas-sim up`'s core, or the core of your "
                            f"own it serves, `up --core-url`; else {DEFAULT_TARGET})")
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.add_argument("--peers", action="store_true",
                       help="audit from the simulators' side instead, needing nothing from the core: money settled "
                            "for features never delivered, features on after a refund or never charged, refunds "
                            "that never completed (the payment gateway's and the IoT fleet's journals and state)")
    audit.add_argument("--payments", type=_url, metavar="URL", help="with --peers: the payment gateway (default: "
                       "the running `caas-sim up`'s, else its default port); checked to be one first")
    audit.add_argument("--iot", type=_url, metavar="URL", help="with --peers: the IoT fleet (default as --payments)")
    audit.set_defaults(handler=cmd_audit)


async def fetch(url: str, token: str | None) -> dict:
    async with AdminClient(url, token=token) as admin:
        return await admin.audit()


def cmd_audit(args: argparse.Namespace) -> int:
    if not args.peers and (args.payments or args.iot):
        raise CliError("--payments and --iot are for --peers (the core's audit asks the core: --target)", EXIT_USAGE)
    if args.peers and args.target:
        raise CliError("--target is the core, which --peers does not ask: --payments and --iot", EXIT_USAGE)
    up = running_up(args)
    if args.peers:
        try:
            report = asyncio.run(peer_audit.audit(args.payments or service_url("payments", up),
                                                  args.iot or service_url("iot", up), token=args.token))
        except peer_audit.WrongService as exc:
            raise CliError(str(exc)) from None
    else:
        report = asyncio.run(fetch(args.target or core_of_up(args, up) or DEFAULT_TARGET, args.token))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return 0 if report["ok"] else EXIT_FAILURE


def render(report: dict) -> str:
    per = Counter(v["invariant"] for v in report["violations"])
    rows = [[name, "ok" if not per[name] else f"{per[name]} violated"] for name in report["invariants"]]
    lines = [render_table(["invariant", "result"], rows), "",
             "checked: " + ", ".join(f"{n} {what}" for what, n in report["checked"].items())]
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    if not report["settled"]:
        busy = ", ".join(f"{n} {what}" for what, n in report["inFlight"].items() if n)
        lines.append(f"warning: not settled ({busy} in flight); settle the clocks and audit again for a final verdict")
    for v in report["violations"]:
        ids = " ".join(f"{k}={val}" for k, val in v["entities"].items())
        lines.append(f"VIOLATION {v['invariant']}: {ids}: {v['detail']}")
    lines.append("every invariant holds" if report["ok"] else f"{len(report['violations'])} violation(s)")
    return "\n".join(lines)

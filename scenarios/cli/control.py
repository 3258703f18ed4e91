"""`caas-sim fault`, `clock` and `journal`: the admin protocol over HTTP, so they work
against services started anywhere, the core included (`--url`), and find those of a
running `caas-sim up` by its state file (``state``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import aiohttp

from caas_sim.simulators.client import AdminClient, AdminUnreachable, load_fault_profile
from caas_sim.simulators.kit.clock import ClockError
from caas_sim.simulators.kit.durations import format_duration, parse_duration

from .. import stack as stack_mod
from ..scenario.coordinator import RemoteCoordinator
from .common import (
    EXIT_USAGE,
    UP_HINT,
    CliError,
    _check_profile,
    _target,
    default_url,
    render_table,
    running_up,
    service_url,
)

#: Real seconds between two polls of `journal --follow` (a shell tool, not domain time).
FOLLOW_INTERVAL = 0.5


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


class Target(NamedTuple):
    label: str
    admin: AdminClient
    health: dict


async def _clock_targets(args: argparse.Namespace, session: aiohttp.ClientSession) -> list[Target]:
    """The services to act on: those named; else every service of the running `caas-sim up`,
    the core included; else the simulators that answer on their default ports."""
    up = running_up(args)
    explicit = [(u, u) for u in args.url or []] or [(n, service_url(n, up)) for n in args.service or []] or \
        list((up or {}).items())
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
    """Every clock moves as one, event by event: each service reaches an instant before any
    of them acts there, and the core's jobs run at their due times (``RemoteCoordinator``).
    Services sharing a clock (the simulators of one `up`) find it already moved, and so do
    those not asked for: they are reported too, as moved with a chosen one."""
    seconds = parse_duration(args.duration)

    async def run() -> int:
        async with aiohttp.ClientSession() as session:
            targets = await _clock_targets(args, session)
            others = _bystanders(args, targets, session)
            before = await _epochs(others)
            real = [t.label for t in targets if t.health["clock"]["mode"] == "real"]
            movable = {t.label: t.admin.base_url for t in targets if t.label not in real}
            clocks = await _advance(movable, seconds, args.token) if movable else []
            after = await _epochs(others)
            along = [label for label, epoch in after.items() if label in before and epoch != before[label]]
            clocks += [(label, await others[label].clock()) for label in along]
        for (now, mode), labels in _by_time(clocks).items():
            print(f"{now}  {mode} clock of {', '.join(labels)} (+{format_duration(seconds)})")
        if along:
            left = [label for label in before if label not in along]
            print(f"{', '.join(along)} moved too: one clock with {', '.join(movable)} (the simulators of one "
                  f"`caas-sim up` cannot move apart){'; not moved: ' + ', '.join(left) if left else ''}")
        if real:
            raise CliError(f"{', '.join(real)}: a real-time clock cannot be moved")
        return 0

    return asyncio.run(run())


async def _advance(urls: dict[str, str], seconds: float, token: str | None) -> list[tuple[str, dict]]:
    world = await RemoteCoordinator(urls, token=token).start()
    try:
        await world.advance_to(world.now() + seconds)
        return [(label, await world.admin(label).clock()) for label in urls]
    except ClockError as exc:
        raise CliError(str(exc)) from None
    finally:
        await world.close()


def _bystanders(args: argparse.Namespace, targets: list[Target],
                session: aiohttp.ClientSession) -> dict[str, AdminClient]:
    """The services not chosen that may share a chosen one's clock: the rest of the running
    `up`, else the rest of the default ports."""
    up = running_up(args)
    table = up or {name: default_url(name) for name in [*stack_mod.SERVICES, "core"]}
    chosen = {t.admin.base_url.rstrip("/") for t in targets} | {t.label for t in targets}
    return {name: AdminClient(url, token=args.token, session=session) for name, url in table.items()
            if name not in chosen and url.rstrip("/") not in chosen}


async def _epochs(clients: dict[str, AdminClient]) -> dict[str, float]:
    """Each answering service's virtual clock (seconds); one that does not answer is left out,
    and so is a scaled one: it moves by itself."""
    answers = await asyncio.gather(*(c.clock() for c in clients.values()), return_exceptions=True)
    return {label: a["epoch"] for label, a in zip(clients, answers)
            if isinstance(a, dict) and a.get("mode") == "virtual" and "epoch" in a}


def _by_time(clocks: list[tuple[str, dict]]) -> dict[tuple[str, str], list[str]]:
    grouped: dict[tuple[str, str], list[str]] = {}
    for label, clock in clocks:
        grouped.setdefault((clock["now"], clock["mode"]), []).append(label)
    return grouped


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

"""``make demo``: customers buy optional services from the reference core, in virtual time.

The stack runs the core against the IoT, VSS and payment simulators, with a
SQLite database in a temporary folder. Customers buy services for healthy,
sleeping, weakly connected, flaky, failing and offline vehicles, one with poor
maintenance, one while VSS is down; the world then lives three virtual days and
the demo prints what the core did: activations and their attempts, refusals,
risk decisions, support tickets, refunds and what each customer was told.
The scenario runner replaces it later.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

from simulators.iot.api import MODEL_KEY as IOT_MODEL
from simulators.kit.clock import Clock, isoformat
from simulators.kit.durations import format_duration
from simulators.vss.api import MODEL_KEY as VSS_MODEL

from .stack import Stack

KEY = "demo-customer"
OPERATOR = "demo-operator"
CARD = {"type": "CARD", "token": "pm_card_visa"}


async def run(seed: int = 2026) -> int:
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        stack = Stack(services=["iot", "vss", "payments"], seed=seed, clock=Clock("virtual"), core={
            "database_url": f"sqlite+aiosqlite:///{Path(folder) / 'core.db'}",
            "api_keys": {KEY: {"role": "customer", "subject": "c-1"},
                         OPERATOR: {"role": "operator", "subject": "ops"}}})
        async with stack, aiohttp.ClientSession(stack.url("core"),
                                                headers={"Authorization": f"Bearer {KEY}"}) as http:
            start = stack.clock.now()
            iot = stack.running["iot"].app[IOT_MODEL].fleet.magic_vins()
            vss = stack.running["vss"].app[VSS_MODEL].magic_vins()
            orders = [
                ("healthy car", iot["healthy"], "heated-seats", "PERMANENT"),
                ("a weekend of power", iot["healthy"], "performance-boost", "TEMPORARY"),
                ("sleeping car", iot["sleeping"], "winter-package", "PERMANENT"),
                ("weak signal", iot["limited"], "premium-audio", "PERMANENT"),
                ("fails twice", iot["flaky_twice"], "matrix-headlights", "PERMANENT"),
                ("ECU error", iot["activation_fails"], "autopilot-plus", "PERMANENT"),
                ("always offline", iot["always_offline"], "sport-mode", "PERMANENT"),
                ("poor maintenance", vss["several_blocks_low"], "performance-boost", "PERMANENT"),
                ("VSS down", vss["fully_compliant"], "track-mode", "PERMANENT"),
            ]
            print(f"CaaS demo: the reference core and its simulators (seed {seed}), virtual time from "
                  f"{isoformat(start)}\n")
            bought = {}
            for label, vin, service, duration in orders:
                if label == "VSS down":
                    stack.service("vss").faults.add({"id": "vss-down", "action": {"type": "vss_unavailable"}})
                async with http.post(f"/customers/c-1/vehicles/{vin}/purchases",
                                     json={"serviceId": service, "durationType": duration,
                                           "paymentMethod": CARD}) as r:
                    answer = await r.json()
                if r.status == 201:
                    bought[label] = answer["purchaseId"]
                    extra = f", risk: {answer['riskDecision']}" if answer["riskDecision"] else ""
                    print(f"  {label:<20} {service:<18} accepted, activation queued{extra}")
                else:
                    print(f"  {label:<20} {service:<18} refused {r.status}: {answer.get('detail', answer['title'])}")
            stack.service("vss").faults.clear()
            events = await stack.advance("3d")

            print(f"\n{'purchase':<20}{'service':<19}{'status':<19}{'attempts':>8}  {'refunded':>9}  delivered after")
            for label, purchase_id in bought.items():
                async with http.get(f"/purchases/{purchase_id}") as r:
                    p = await r.json()
                after = "-"
                if p["deliveredAt"]:
                    after = format_duration(_seconds(p["deliveredAt"]) - start)
                refunded = f"{p['refunded']['value'] / 100:.2f} {p['refunded']['currency']}"
                print(f"{label:<20}{p['serviceId']:<19}{p['status']:<19}{p['attempts']:>8}  {refunded:>9}  {after}")
            async with http.get("/customers/c-1/notifications") as r:
                notices = (await r.json())["notifications"]
            async with http.get("/support/tickets", headers={"Authorization": f"Bearer {OPERATOR}"}) as r:
                tickets = (await r.json())["tickets"]
            told: dict[str, set[str]] = {}
            for n in notices:
                told.setdefault(n["template"], set()).add(n["channel"])
            print("\nthe customer was told: " + "; ".join(
                f"{template} ({', '.join(sorted(channels))})" for template, channels in sorted(told.items())))
            print(f"support tickets: {len(tickets)} (" + "; ".join(t["subject"] for t in tickets) + ")")
            violations = stack.violations()
            print(f"contract violations between the core and the simulators: {len(violations)}")
            print(f"{format_duration(stack.clock.now() - start)} of virtual time, {events} timed events, "
                  f"in {time.perf_counter() - wall:.2f} s of wall time")
            return 1 if violations else 0


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def main(seed: int = 2026) -> int:
    return asyncio.run(run(seed))


if __name__ == "__main__":
    raise SystemExit(main())

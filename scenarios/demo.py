"""``make demo``: OTA activations on a simulated fleet, with faults, in virtual time.

The stack runs the IoT simulator and a webhook receiver standing in for the
core. A small driver plays the core's part of the specification: it activates
services, retries a FAILED activation with exponential backoff (1, 5, 15, 30
min), and after the last failure queries the vehicle's status (where the core
would open a support ticket and refund). Then it prints what happened.
The scenario runner replaces this later.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from simulators.iot.fleet import Fleet
from simulators.kit.clock import Clock, isoformat
from simulators.kit.durations import format_duration

from .stack import Stack

BACKOFF = (60, 300, 900, 1800)  # the specification's example retry delays


@dataclass
class Purchase:
    label: str
    vin: str
    service_id: str
    flags: list[str]
    duration: dict = field(default_factory=lambda: {"type": "PERMANENT"})
    attempts: int = 0
    outcome: str = "pending"
    finished_at: float | None = None
    history: list[str] = field(default_factory=list)


class Driver:
    """The core's OTA retry policy, in miniature."""

    def __init__(self, stack: Stack, http: aiohttp.ClientSession):
        self.stack, self.http, self.clock = stack, http, stack.clock
        self.start = self.clock.now()
        self.by_request: dict[str, Purchase] = {}
        self.timeline: list[tuple[float, str]] = []
        stack.sink.listeners.append(self.on_callback)

    def log(self, text: str) -> None:
        self.timeline.append((self.clock.now(), text))

    async def activate(self, p: Purchase) -> None:
        p.attempts += 1
        body = {"vin": p.vin, "serviceId": p.service_id,
                "configuration": {"featureFlags": p.flags, "parameters": {}}, "duration": p.duration}
        async with self.http.post("/ota/activate", json=body,
                                  headers={"X-Correlation-Id": f"demo-{p.service_id}-{p.attempts}"}) as r:
            answer = await r.json()
        if r.status != 202:
            p.outcome = f"refused {r.status}: {answer.get('detail')}"
            self.log(f"{p.label:<22} refused {r.status}: {answer.get('title')}")
            return
        self.by_request[answer["requestId"]] = p
        self.log(f"{p.label:<22} attempt {p.attempts}: {answer['status']}")

    def on_callback(self, received) -> None:
        payload = received.payload
        p = self.by_request.get(payload["requestId"])
        if p is None:
            return
        if payload["status"] == "ACTIVATED":
            p.outcome, p.finished_at = "ACTIVATED", self.clock.now()
            self.log(f"{p.label:<22} ACTIVATED (customer notified)")
        elif payload["status"] == "FAILED":
            if p.attempts <= len(BACKOFF):
                delay = BACKOFF[p.attempts - 1]
                self.log(f"{p.label:<22} FAILED {payload['errorCode']}: retry in {format_duration(delay)}")
                self.clock.call_later(delay, lambda: self.clock.spawn(self.activate(p), "demo"))
            else:
                self.log(f"{p.label:<22} FAILED {payload['errorCode']}: retries exhausted")
                self.clock.spawn(self.give_up(p), "demo")

    async def give_up(self, p: Purchase) -> None:
        async with self.http.get(f"/vehicles/{p.vin}/status") as r:
            status = await r.json()
        p.outcome, p.finished_at = "NOT DELIVERED", self.clock.now()
        codes = ",".join(status["diagnostics"]["errorCodes"]) or "none"
        self.log(f"{p.label:<22} vehicle {status['connectivity']}, error codes {codes}: "
                 "support ticket + refund (never charged)")


async def run(seed: int = 2026) -> int:
    wall = time.perf_counter()
    stack = Stack(services=["iot"], seed=seed, clock=Clock("virtual"))
    async with stack, aiohttp.ClientSession(stack.url("iot")) as http:
        magic = (await (await http.get("/fleet/magic-vins")).json())["vins"]
        fleet = Fleet(seed)
        ordinary = fleet.vin_at(4242)
        purchases = [
            Purchase("healthy car", magic["healthy"], "performance-boost", ["performance_boost", "sport_mode"]),
            Purchase("ordinary car", ordinary, "heated-seats", ["heated_seats"],
                     {"type": "TEMPORARY", "expiryDate": isoformat(stack.clock.now() + 2 * 86400)}),
            Purchase("sleeping car", magic["sleeping"], "winter-package", ["winter_package"]),
            Purchase("limited signal", magic["limited"], "premium-audio", ["premium_audio"]),
            Purchase("fails twice", magic["flaky_twice"], "track-mode", ["track_mode"]),
            Purchase("callback duplicated", magic["callback_duplicated"], "matrix-lights", ["matrix_headlights"]),
            Purchase("ECU error", magic["activation_fails"], "autopilot-plus", ["autopilot_plus"]),
            Purchase("always offline", magic["always_offline"], "launch-control", ["launch_control"]),
            Purchase("unknown feature", magic["healthy"], "warp", ["warp_drive"]),
        ]
        # A fault rule as a developer would post it: the first two pushes to the
        # ordinary car find it offline.
        await http.post("/__admin/faults", json={"id": "ordinary-offline", "action": {"type": "vehicle_offline"},
                                                 "match": {"selectors": {"vin": ordinary}}, "times": 2})
        driver = Driver(stack, http)
        for p in purchases:
            await driver.activate(p)
        events = await stack.advance("3d")
        journal = stack.service("iot").journal.entries()

    print(f"CaaS simulator demo: OTA activations on a fleet of {len(fleet):,} vehicles (seed {seed}), "
          f"virtual time from {isoformat(driver.start)}\n")
    for at, text in driver.timeline:
        print(f"  +{format_duration(at - driver.start):>8}  {text}")
    print(f"\n{'purchase':<22}{'vehicle':<19}{'attempts':>9}  {'outcome':<15}{'after':>8}")
    for p in purchases:
        after = format_duration(p.finished_at - driver.start) if p.finished_at else "-"
        print(f"{p.label:<22}{p.vin:<19}{p.attempts:>9}  {p.outcome.split(':')[0]:<15}{after:>8}")
    webhooks = [e for e in journal if e["kind"] == "webhook"]
    duplicates = sum(1 for r in stack.sink.received if r.duplicate)
    expired = [r for r in stack.sink.received if r.payload["status"] == "EXPIRED"]
    print(f"\ncallbacks: {len(webhooks)} deliveries, all signed and verified; {duplicates} duplicate(s) recognised "
          f"by webhook-id; {len(expired)} temporary service(s) expired on the clock")
    print(f"faults applied: {sum(1 for e in journal if e['kind'] == 'fault')}; contract violations: "
          f"{sum(1 for e in journal if e['kind'] == 'violation')}")
    print(f"{format_duration(stack.clock.now() - driver.start)} of virtual time, {events} timed events, "
          f"in {time.perf_counter() - wall:.2f} s of wall time")
    return 0


def main(seed: int = 2026) -> int:
    return asyncio.run(run(seed))


if __name__ == "__main__":
    raise SystemExit(main())

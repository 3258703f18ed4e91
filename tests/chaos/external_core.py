"""The core as a separate process (so that it can be SIGKILLed) against simulators served
by the test, with the two clocks driven in lockstep over the admin protocol.

The core's virtual clock lives in its memory: a restarted core starts again at the default
epoch, so every start moves it to the simulators' time (a real core's clock keeps going).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
from datetime import UTC, datetime

import aiohttp

from caas_sim.scenarios.stack import CORE_WEBHOOK_PATHS, Stack

#: Real seconds between two looks at another process that must become idle.
POLL = 0.02


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


class ExternalCore:
    def __init__(self, stack: Stack, env: dict[str, str]):
        self.stack = stack
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.proc: asyncio.subprocess.Process | None = None
        self.http: aiohttp.ClientSession | None = None
        self.kills = 0
        for name in stack.services:
            if name in CORE_WEBHOOK_PATHS:
                stack.service(name).webhooks.subscribe("*", self.url + CORE_WEBHOOK_PATHS[name])

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "caas_sim.scenarios.cli", "serve", "core", "--port", str(self.port), "--clock", "virtual",
            env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        header = await asyncio.wait_for(self.proc.stdout.readline(), timeout=30)
        assert b"SERVICE" in header, header
        if self.http is None:
            self.http = aiohttp.ClientSession(self.url)
        await self.move_to(self.stack.clock.now())

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        self.kills += 1

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await self.proc.wait()
        if self.http:
            await self.http.close()

    async def health(self) -> dict:
        async with self.http.get("/__admin/health") as r:
            return await r.json()

    async def audit(self) -> dict:
        async with self.http.get("/__admin/audit") as r:
            assert r.status == 200
            return await r.json()

    async def move_to(self, ts: float) -> None:
        async with self.http.post("/__admin/clock", json={"to": iso(ts)}) as r:
            assert r.status in (200, 409), await r.text()  # 409: already there

    async def quiet(self) -> float | None:
        """Wait until the core is idle with nothing due (twice in a row); its next due time."""
        calm = 0
        while calm < 2:
            health = await self.health()
            due = datetime.fromisoformat(health["nextDue"]).timestamp() if health["nextDue"] else None
            now = health["clock"]["epoch"]
            calm = calm + 1 if health["busy"] == 0 and (due is None or due > now) else 0
            await asyncio.sleep(POLL)  # another process: poll until it is idle
        return due

    async def advance(self, seconds: float) -> None:
        """Move the world (simulators and core) event by event, settling in between."""
        clock = self.stack.clock
        target = clock.now() + seconds
        while True:
            await clock.settle()
            core_due = await self.quiet()
            await clock.settle()
            dues = [d for d in (clock.next_due(), core_due) if d is not None]
            if not dues or min(dues) > target:
                break
            step = max(min(dues), clock.now())
            await clock.advance_to(step)
            await self.move_to(step)
        await clock.advance_to(target)
        await self.move_to(target)
        await clock.settle()
        await self.quiet()


async def kill_at_random(core: ExternalCore, rng: random.Random, low: float, high: float) -> None:
    await asyncio.sleep(rng.uniform(low, high))  # real time: the point of the kill is to land anywhere
    await core.kill()

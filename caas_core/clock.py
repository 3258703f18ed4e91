"""The core's clock: real, virtual or scaled, as the simulators' (DESIGN.md).

The core keeps no timers in memory: what is due later is a durable job with a
run-at time in the database, which the job runner runs as the clock passes it.
The one wait this clock holds is an upstream call's deadline (``within``): on a
virtual clock it passes when the clock is moved past it, as an upstream holding
its answer on the same clock (injected latency) answers when the clock gets
there; ``next_due`` tells a world when the next deadline would pass.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import re
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")

#: 2026-01-05T08:00:00Z, the simulators' default start of virtual time.
DEFAULT_EPOCH = 1767600000.0
#: The latest instant the clock may reach (9900-01-01T00:00:00Z): a century short of the
#: calendar's end, so that every date worked out ahead of it (an estimate, a due date, an
#: expiry, business days) is still a date.
MAX_TIME = 250246627200.0


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: str | float) -> float:
    """``90s``, ``15m``, ``1h30m``, ``3d`` or seconds, as the admin protocol writes durations."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    text = str(value).strip()
    if not text or _PART.sub("", text):
        raise ValueError(f"not a duration: {value!r} (examples: 90s, 15m, 1h30m, 3d)")
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))


def parse_instant(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


class ClockError(Exception):
    """A move the clock refuses: backward, past the end of time, or on a real-time clock."""


def isoformat(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CoreClock:
    def __init__(self, mode: str = "real", *, scale: float = 1.0, start: float | None = None):
        if mode not in ("real", "virtual", "scaled"):
            raise ValueError(f"unknown clock mode {mode!r} (real, virtual or scaled:N)")
        if scale <= 0:
            raise ValueError("clock scale must be positive")
        self.mode = mode
        self.scale = 1.0 if mode == "real" else scale
        self._base = time.time() if mode == "real" else (DEFAULT_EPOCH if start is None else float(start))
        self._anchor = time.monotonic()
        self._deadlines: list[tuple[float, int, asyncio.Future]] = []
        self._seq = itertools.count()
        #: Calls waiting on an upstream's answer (``within``): parked, not busy (DESIGN.md).
        self.parked = 0

    @classmethod
    def parse(cls, spec: str) -> CoreClock:
        """``real`` | ``virtual`` | ``scaled:N``."""
        mode, _, factor = spec.partition(":")
        if mode == "scaled":
            try:
                return cls("scaled", scale=float(factor or 60))
            except ValueError:
                raise ValueError(f"bad clock {spec!r}: scaled:N wants a positive number") from None
        if factor:
            raise ValueError(f"bad clock {spec!r}: only scaled takes a factor")
        return cls(mode)

    def now(self) -> float:
        if self.mode == "virtual":
            return self._base
        return self._base + (time.monotonic() - self._anchor) * self.scale

    def move_to(self, target: float, *, expire: bool = True) -> None:
        """Move to ``target``; the deadlines passed on the way expire, unless ``expire`` is
        false: then they wait for the next move (a world brings every clock to an instant
        before anything due there runs, as ``POST /__admin/clock`` with ``fire: false``)."""
        if self.mode == "real":
            raise ClockError("a real-time clock cannot be moved")
        now = self.now()
        if target < now:
            raise ClockError(f"the clock never moves backward (now {isoformat(now)}, asked {isoformat(target)})")
        if target > MAX_TIME:
            raise ClockError(f"cannot move the clock past {isoformat(MAX_TIME)}")
        self._base += target - now
        if expire:
            self.expire_passed()

    def expire_passed(self) -> None:
        """The deadlines the clock has passed expire (their calls give up)."""
        now = self.now()
        while self._deadlines and self._deadlines[0][0] <= now:
            expired = heapq.heappop(self._deadlines)[2]
            if not expired.done():
                expired.set_result(None)

    def next_due(self) -> float | None:
        """When the earliest deadline of a call still waiting passes (virtual time)."""
        while self._deadlines and self._deadlines[0][2].done():
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    async def within(self, aw: Awaitable[T], timeout: float) -> T:
        """``aw``'s result, or TimeoutError once ``timeout`` seconds of this virtual clock
        have passed. It gives up after ``timeout`` real seconds too, as a real-time clock
        would: a world that nobody moves must not hang its callers."""
        call = asyncio.ensure_future(aw)
        expired = asyncio.get_running_loop().create_future()
        heapq.heappush(self._deadlines, (self.now() + timeout, next(self._seq), expired))
        self.parked += 1
        try:
            await asyncio.wait((call, expired), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            call.cancel()
            raise
        finally:
            self.parked -= 1
            if not expired.done():
                expired.cancel()
        if call.done():
            return call.result()
        call.cancel()
        try:
            await call
        except asyncio.CancelledError:
            pass
        raise TimeoutError(f"no answer within {timeout:g} s")

    def describe(self) -> dict:
        return {"now": isoformat(self.now()), "epoch": self.now(), "mode": self.mode, "scale": self.scale}

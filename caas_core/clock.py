"""The core's clock: real, virtual or scaled, as the simulators' (DESIGN.md).

The core keeps no timers in memory: what is due later is a durable job with a
run-at time in the database. So this clock only tells the time and moves; the
job runner asks the database what is due and runs it as the clock passes it.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

#: 2026-01-05T08:00:00Z, the simulators' default start of virtual time.
DEFAULT_EPOCH = 1767600000.0
#: The end of representable time (9999-12-31T23:59:59Z).
MAX_TIME = 253402300799.0


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

    def move_to(self, target: float) -> None:
        if self.mode == "real":
            raise ClockError("a real-time clock cannot be moved")
        now = self.now()
        if target < now:
            raise ClockError(f"the clock never moves backward (now {isoformat(now)}, asked {isoformat(target)})")
        if target > MAX_TIME:
            raise ClockError(f"cannot move the clock past {isoformat(MAX_TIME)}")
        self._base += target - now

    def describe(self) -> dict:
        return {"now": isoformat(self.now()), "epoch": self.now(), "mode": self.mode, "scale": self.scale}

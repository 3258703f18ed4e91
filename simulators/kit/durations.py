"""Durations as people write them: ``90s``, ``15m``, ``1h30m``, ``3d``, ``250ms``."""

from __future__ import annotations

import math
import re

from .clock import MAX_TIME

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")
#: The longest duration: no clock moves further (``MAX_TIME`` from the epoch), and a longer
#: one overflows a date before any clock could refuse it.
MAX_DURATION = MAX_TIME


class DurationTooLong(ValueError):
    """A well-formed duration longer than any clock can move (a clock move's 409, not a 400)."""


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``; a bare number is seconds. Raises ValueError with the reason."""
    if isinstance(value, bool):
        raise TypeError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"not a duration: {value!r} (a finite number of seconds)")
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value}")
        if value > MAX_DURATION:
            raise DurationTooLong(f"a duration too long for any clock: {value:g} s (at most "
                                  f"{MAX_DURATION / 86400:.0f}d)")
        return float(value)
    text = value.strip().replace(" ", "")
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number):  # "nan", "inf", "1e400"
            raise ValueError(f"not a duration: {value!r} (a finite number of seconds)")
        return parse_duration(number)
    if not _WHOLE.match(text):
        raise ValueError(f"not a duration: {value!r} (examples: 90s, 15m, 1h30m, 3d, 250ms)")
    return parse_duration(sum(float(n) * _UNITS[u] for n, u in _PART.findall(text)))


def format_duration(seconds: float) -> str:
    """``seconds`` as ``parse_duration`` reads it, to the millisecond: ``1.5`` is ``1.5s``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    out, rest = [], round(seconds * 1000)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    if rest:
        out.append(f"{rest / 1000:g}s")
    return "".join(out) or "0s"

"""When a registry is down: its weekly maintenance windows (in local time), and the 503
that sends the caller to manual submission."""

from __future__ import annotations

import math
from datetime import time, timedelta
from typing import Any

from ..kit.clock import isoformat
from ..kit.errors import ProblemError
from .business_days import Calendar
from .vocabulary import Country, Window


class Maintenance:
    """The weekly maintenance windows of a registry, on its calendar's time zone."""

    def __init__(self, calendar: Calendar, windows: tuple[Window, ...]):
        self.calendar = calendar
        self.windows = windows

    def until(self, ts: float) -> float | None:
        """When the maintenance under way at ``ts`` ends (adjacent windows run on), else None."""
        end = None
        for _ in range(len(self.windows) + 1):
            local = self.calendar.local(ts if end is None else end)
            for w in self.windows:
                if local.weekday() == w.weekday and w.start <= local.time() \
                        and (w.until == time(0) or local.time() < w.until):
                    end_day = local.date() + timedelta(days=1) if w.until == time(0) else local.date()
                    end = self.calendar.at(end_day, w.until)
                    break
            else:
                return end
        return end

    def upcoming(self, ts: float) -> tuple[float, float] | None:
        """The maintenance under way or next to come (adjacent windows merged), if any."""
        today = self.calendar.local(ts).date()
        spans = []
        for offset in range(-1, 8):
            day = today + timedelta(days=offset)
            for w in self.windows:
                if day.weekday() == w.weekday:
                    begin = self.calendar.at(day, w.start)
                    end = self.until(begin)
                    if end is not None and end > ts:
                        spans.append((begin, end))
        return min(spans) if spans else None


def unavailable(country: Country, now: float, reason: str, retry_after: float, why: str,
                **extra: Any) -> ProblemError:
    """The 503 of a registry that cannot take the request now: retry later or submit manually."""
    retry = max(1, math.ceil(retry_after))
    return ProblemError(503, "Registry unavailable",
                        f"the {country.authority} is unavailable: {why}; retry later or submit manually",
                        kind="registry-unavailable", headers={"Retry-After": str(retry)}, reason=reason,
                        fallback="MANUAL_SUBMISSION", availableAgainAt=isoformat(now + retry),
                        manualSubmission=dict(country.manual_submission), **extra)

"""Business days and office hours of an authority, in its own time zone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


def easter(year: int) -> date:
    """Western Easter Sunday (the anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return date(year, month, day + 1)


class Calendar:
    """Business days and office hours of one authority, in its time zone."""

    def __init__(self, timezone: str, holidays: Callable[[int], frozenset[date]],
                 opens: time = time(9), closes: time = time(17)):
        if closes <= opens:
            raise ValueError(f"office hours {opens}-{closes} close before they open")
        self.tz = ZoneInfo(timezone)
        self.opens, self.closes = opens, closes
        self._holidays = lru_cache(maxsize=64)(holidays)
        # Every submission asks for the same few days (today + the processing days) and
        # minutes of office hours: cached.
        self.add_business_days = lru_cache(maxsize=4096)(self._add_business_days)
        self.at = lru_cache(maxsize=4096)(self._at)
        # A request asks for the local time of its instant several times (a virtual
        # clock stands still between moves): the last answer is kept.
        self._last: tuple[float, datetime] = (float("nan"), datetime.min)

    def local(self, ts: float) -> datetime:
        last_ts, last = self._last
        if ts != last_ts:
            last = datetime.fromtimestamp(ts, self.tz)
            self._last = (ts, last)
        return last

    def _at(self, day: date, when: time) -> float:
        """The instant of ``when`` on ``day``, local time."""
        return datetime.combine(day, when, self.tz).timestamp()

    def is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self._holidays(day.year)

    def _add_business_days(self, day: date, n: int) -> date:
        """The n-th business day after ``day`` (``day`` itself never counts)."""
        while n > 0:
            day += timedelta(days=1)
            n -= self.is_business_day(day)
        return day

    def next_opening(self, ts: float) -> float:
        """``ts`` if the office is open then, else when it next opens."""
        now = self.local(ts)
        day = now.date()
        if self.is_business_day(day) and self.opens <= now.time() < self.closes:
            return ts
        if not (self.is_business_day(day) and now.time() < self.opens):
            day = self.add_business_days(day, 1)
        return self.at(day, self.opens)

    def office_minute(self, key: int) -> time:
        span = (self.closes.hour * 60 + self.closes.minute) - (self.opens.hour * 60 + self.opens.minute)
        minute = self.opens.hour * 60 + self.opens.minute + key % span
        return time(minute // 60, minute % 60)

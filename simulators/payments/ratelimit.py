"""A fixed-window request limit on the simulator's clock.

``limit`` requests per ``window`` seconds of clock time, per client (the
``X-Client-Id`` header, as a real gateway would count per API key) or over
all callers. Windows are aligned on multiples of ``window`` since the epoch, so
the same requests at the same virtual times get the same answers every run.

LIMITATIONS: a fixed window lets up to twice ``limit`` through around a window
boundary (a sliding log would not); idempotent replays are not counted.
"""

from __future__ import annotations

import math

SCOPES = ("client", "overall")
ANONYMOUS = "anonymous"


class RateLimiter:
    def __init__(self, limit: int, window: float = 1.0, scope: str = "client"):
        if limit < 0:
            raise ValueError(f"rate_limit must be >= 0 (0 turns it off), got {limit}")
        if window <= 0:
            raise ValueError(f"rate_limit_window must be > 0 seconds, got {window}")
        if scope not in SCOPES:
            raise ValueError(f"rate_limit_scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        self.limit, self.window, self.scope = limit, window, scope
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (window index, requests in it)

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def hit(self, client: str | None, now: float) -> int | None:
        """Count one request; None when allowed, else the whole seconds until the window ends (>= 1)."""
        if not self.enabled:
            return None
        key = (client or ANONYMOUS) if self.scope == "client" else "*"
        index = math.floor(now / self.window)
        current, count = self._counts.get(key, (index, 0))
        if current != index:
            count = 0
        if count >= self.limit:
            return max(1, math.ceil((index + 1) * self.window - now))
        self._counts[key] = (index, count + 1)
        return None

    def reset(self) -> None:
        self._counts.clear()

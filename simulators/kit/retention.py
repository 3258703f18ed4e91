"""Finished things forgotten some clock time after their last change, or once too many.

A simulator under a long load would otherwise keep every payment, order or OTA request
it ever saw. A model tells ``touched(key)`` whenever something changes, and whether the
change left it finished; ``due()`` then yields, oldest first, the finished keys untouched
for ``period`` of clock time, and while more than ``keep`` keys are held the oldest
finished ones whatever their age; lazily (no timer: the clock's next due time stays the
world's own).

A key touched unfinished is held (it counts towards ``keep``) but not queued: past
``keep`` with 100,000 orders still on their way, a queue of them all made each call look
at entries it could not forget, and re-queue them (~20 µs a placement). A model that
does not tell touches every change as finished, and touches a key ``due`` yields that
it finds still on its way as unfinished: held until a change finishes it.

A call looks at ``SCAN`` queued entries at most, so that its cost stays the same whatever
is held. Each call adds an entry or two, so the scan keeps ahead of the queue and what is
finished is still forgotten within a few calls.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable, Iterator

#: Queued entries one ``due`` call looks at, at most.
SCAN = 16


class Retention:
    def __init__(self, now: Callable[[], float], period: float | None = None, keep: int | None = None):
        self._now = now
        self.period, self.keep = period, keep
        self._queue: collections.deque[tuple[float, Hashable]] = collections.deque()  # in time order
        self._last: dict[Hashable, float | None] = {}  # held: its queued time, None when unfinished

    def touched(self, key: Hashable, finished: bool = True) -> None:
        if not finished:
            self._last[key] = None  # an entry queued before is skipped when it comes up
            return
        now = self._now()
        if self._last.get(key) != now:  # several changes in one instant: queued once
            self._last[key] = now
            self._queue.append((now, key))

    def due(self) -> Iterator[Hashable]:
        queue = self._queue
        cutoff = self._now() - self.period if self.period is not None else float("-inf")
        # An entry is looked at once per call at most: one touched again goes to the back.
        for _ in range(min(len(queue), SCAN)):
            at, key = queue[0]
            if self._last.get(key) != at:  # touched since (a later entry stands for it) or held unfinished
                queue.popleft()
                continue
            if at > cutoff and (self.keep is None or len(self._last) <= self.keep):
                return
            queue.popleft()
            del self._last[key]
            yield key

    def forget(self, key: Hashable) -> None:
        self._last.pop(key, None)  # its queued entry is skipped when it comes up

    def clear(self) -> None:
        self._queue.clear()
        self._last.clear()

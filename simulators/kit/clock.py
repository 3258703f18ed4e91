"""Clock and scheduler: every time-dependent rule of a simulator runs on this.

Modes:
- ``virtual``: time moves only when told (``advance``/``set``); timers fire in
  order as the clock passes them.
- ``scaled``: N virtual seconds per real second; timers are armed on the loop.
- ``real``: wall time (a scaled clock with N=1 that refuses to be moved).

Busy accounting makes "the system has settled" observable: a handler, job or
webhook delivery counts as busy while it runs, and stops counting while it is
parked on the clock (``sleep``, ``wait_for`` deadlines) or awaiting another
service. Settlement is "nothing busy for N loop turns", which covers bytes in
flight between two services in one loop (DESIGN.md: 5 turns were too few).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import heapq
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")

#: 2026-01-05T08:00:00Z, a Monday morning: the default start of virtual time.
DEFAULT_EPOCH = 1767600000.0
#: The latest instant the clock may reach (9900-01-01T00:00:00Z): a century short of the
#: calendar's end, so that every date worked out ahead of it (an estimate, a due date, an
#: expiry, business days) is still a date.
MAX_TIME = 250246627200.0
#: Idle loop turns that confirm settlement (DESIGN.md measured 10 as the minimum).
SETTLE_TURNS = 20

_holds_busy: contextvars.ContextVar[bool] = contextvars.ContextVar("holds_busy", default=False)


class ClockError(Exception):
    """A clock move that is not allowed (backward, or on a real-time clock)."""


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


@functools.lru_cache(maxsize=8192)
def isoformat(ts: float) -> str:
    # Cached: a virtual clock stands still between moves, and answers repeat the same
    # instants (a request's creation, a vehicle's due dates): formatting costs ~1.5 µs.
    return to_datetime(ts).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def wall_isoformat(ts: float) -> str:
    """A wall time to the microsecond: within one virtual instant, wall times order the
    entries of several services' journals, and milliseconds tie too often to tell."""
    return to_datetime(ts).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_datetime(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


class Timer:
    """A caller's handle on a scheduled callback: when it is due, and ``cancel()``."""

    __slots__ = ("_clock", "seq", "when")

    def __init__(self, clock: Clock, seq: int, when: float):
        self._clock, self.seq, self.when = clock, seq, when

    @property
    def cancelled(self) -> bool:
        return self.seq not in self._clock._calls  # (or fired)

    def cancel(self) -> None:
        self._clock._cancel(self.seq)


class _Callbacks:
    """Callbacks by number, counted by the pending timers that use them: a timer is then
    plain values only. Models give every timer of a kind one bound method, so this holds a
    few; a one-off closure (a deadline) leaves with its timer."""

    __slots__ = ("_by_number", "_number_of", "_numbers", "_uses")

    def __init__(self) -> None:
        self._by_number: dict[int, Callable[..., Any]] = {}
        self._number_of: dict[Callable[..., Any], int] = {}
        self._uses: dict[int, int] = {}
        self._numbers = itertools.count()

    def take(self, callback: Callable[..., Any]) -> int:
        number = self._number_of.get(callback)
        if number is None:
            number = self._number_of[callback] = next(self._numbers)
            self._by_number[number], self._uses[number] = callback, 0
        self._uses[number] += 1
        return number

    def release(self, number: int) -> Callable[..., Any]:
        callback, uses = self._by_number[number], self._uses[number] - 1
        if uses:
            self._uses[number] = uses
        else:
            del self._by_number[number], self._number_of[callback], self._uses[number]
        return callback


class Clock:
    def __init__(self, mode: str = "virtual", *, scale: float = 1.0, start: float | None = None):
        if mode not in ("real", "virtual", "scaled"):
            raise ValueError(f"unknown clock mode {mode!r} (real, virtual or scaled)")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError("clock scale must be a positive number")
        self.mode = mode
        self.scale = 1.0 if mode == "real" else scale
        if mode == "real":
            start = time.time()
        self._virtual = DEFAULT_EPOCH if start is None else float(start)
        self._fires_to = self._virtual  # virtual: timers due by here fire; beyond, they wait for a move
        self._wall_anchor = time.monotonic()
        # The pending timers: a heap of flat (when, seq, owner, waiter, *args),
        # (when, seq) ordering ties by insertion, and the number of each one's callback by seq (a
        # timer is pending while its seq is there). Plain values only, as the args mostly are:
        # the collector stops tracking such a tuple, and a dict of ints it does not even visit,
        # so that a hundred thousand timers pending (orders on their way for weeks) cost its
        # passes a walk of the heap's list alone (a dict of callbacks: ~20 ms a pass more).
        # waiter: a task's wait (sleep, deadline): on reset it is ended, not forgotten.
        self._timers: list[tuple] = []
        self._calls: dict[int, int] = {}
        self._callbacks = _Callbacks()
        self._seq = itertools.count()
        self._busy = 0
        self._busy_by_owner: dict[str, int] = {}
        self.held = 0  # requests whose answer is held on this clock (``hold``)
        self._armed: asyncio.TimerHandle | None = None
        self._tasks: dict[str, set[asyncio.Task]] = {}

    # --- reading time ---------------------------------------------------
    def now(self) -> float:
        if self.mode == "virtual":
            return self._virtual
        return self._virtual + (time.monotonic() - self._wall_anchor) * self.scale

    def now_iso(self) -> str:
        return isoformat(self.now())

    def describe(self) -> dict:
        return {"now": self.now_iso(), "epoch": self.now(), "mode": self.mode, "scale": self.scale}

    # --- timers ---------------------------------------------------------
    def call_at(self, when: float, callback: Callable[..., Any], *args: Any, owner: str | None = None,
                waiter: bool = False) -> Timer:
        # On a whole millisecond (rounded up): the admin protocol names instants to the
        # millisecond, so a coordinator in another process can then move a clock exactly to
        # any timer, and a world across processes unfolds as the same world in one.
        when = math.ceil(when * 1000 - 1e-3) / 1000
        seq = next(self._seq)
        self._calls[seq] = self._callbacks.take(callback)
        heapq.heappush(self._timers, (when, seq, owner, waiter, *args))
        if self.mode != "virtual":
            if self._timers[0][1] == seq:
                self._arm()
        elif when <= self._fires_to:
            # Due already (a webhook sent "now", say): fire on the next loop
            # turn, in (when, seq) order, without waiting for a clock move.
            try:
                asyncio.get_running_loop().call_soon(self._fire_due, self._fires_to)
            except RuntimeError:
                pass  # no loop yet: the next advance fires it
        return Timer(self, seq, when)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any, owner: str | None = None,
                   waiter: bool = False) -> Timer:
        return self.call_at(self.now() + max(0.0, delay), callback, *args, owner=owner, waiter=waiter)

    def next_due(self, owner: str | None = None) -> float | None:
        self._drop_cancelled()
        if owner is None:
            return self._timers[0][0] if self._timers else None
        calls = self._calls
        due = [timer[0] for timer in self._timers if timer[2] == owner and timer[1] in calls]
        return min(due) if due else None

    def pending(self, owner: str | None = None) -> int:
        calls = self._calls
        return sum(1 for timer in self._timers if timer[1] in calls and (owner is None or timer[2] == owner))

    def cancel_owned(self, owner: str) -> None:
        """Forget ``owner``'s timers; a task waiting on one is woken so that it can finish."""
        for timer in list(self._timers):
            if timer[2] == owner:
                number = self._calls.pop(timer[1], None)
                if number is not None:
                    callback = self._callbacks.release(number)
                    if timer[3]:  # a waiter
                        callback(*timer[4:])

    def _cancel(self, seq: int) -> None:
        number = self._calls.pop(seq, None)
        if number is not None:
            self._callbacks.release(number)

    def _drop_cancelled(self) -> None:
        while self._timers and self._timers[0][1] not in self._calls:
            heapq.heappop(self._timers)

    def _fire_due(self, until: float) -> int:
        """Fire every timer due at or before ``until``, in (when, seq) order."""
        fired = 0
        while self._timers and self._timers[0][0] <= until:
            timer = heapq.heappop(self._timers)
            number = self._calls.pop(timer[1], None)
            if number is None:  # cancelled
                continue
            when = timer[0]
            if self.mode == "virtual" and when > self._virtual:
                self._virtual = when
            self._callbacks.release(number)(*timer[4:])
            fired += 1
        if not self._calls and fired:
            # A dict keeps its table when emptied: a burst of timers would hold its peak's
            # size for good.
            self._calls = {}
        return fired

    def _arm(self) -> None:
        """Scaled/real: wake the loop when the earliest timer is due."""
        if self._armed is not None:
            self._armed.cancel()
            self._armed = None
        self._drop_cancelled()
        if not self._timers:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, (self._timers[0][0] - self.now()) / self.scale)
        self._armed = loop.call_later(delay, self._on_wake)

    def _on_wake(self) -> None:
        self._armed = None
        self._fire_due(self.now())
        self._arm()

    # --- waiting on the clock -----------------------------------------
    async def sleep(self, delay: float, owner: str | None = None) -> None:
        fut = asyncio.get_running_loop().create_future()
        timer = self.call_later(delay, _resolve, fut, owner=owner, waiter=True)
        try:
            with self.parked():
                await fut
        finally:
            timer.cancel()

    async def hold(self, delay: float, owner: str | None = None) -> None:
        """``sleep`` for a request whose answer is held on the clock (injected latency or
        timeout), counted in ``held``: a caller in the same world waiting on such an answer
        is parked on the clock, where before the hold its request may still be on its way."""
        self.held += 1
        try:
            await self.sleep(delay, owner)
        finally:
            self.held -= 1

    async def wait_for(self, aw: Awaitable[T], timeout: float, owner: str | None = None, *,
                       park: bool = True) -> T:
        """``asyncio.wait_for`` whose deadline is a clock timer (seen by next_due). The
        waiting task is parked (not busy) unless ``park`` is false."""
        task = asyncio.ensure_future(aw)
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            if not task.done():
                timed_out = True
                task.cancel()

        timer = self.call_later(timeout, expire, owner=owner, waiter=True)
        try:
            with self.parked() if park else contextlib.nullcontext():
                return await task
        except asyncio.CancelledError:
            if timed_out:
                raise TimeoutError(f"no answer within {timeout:g} s of clock time") from None
            raise
        finally:
            timer.cancel()

    # --- busy accounting ------------------------------------------------
    @property
    def busy(self) -> int:
        return self._busy

    def busy_of(self, owner: str) -> int:
        return self._busy_by_owner.get(owner, 0)

    def enter(self, owner: str) -> contextvars.Token:
        """The current task starts working for ``owner`` (the hot path's ``working``)."""
        self._busy += 1
        self._busy_by_owner[owner] = self._busy_by_owner.get(owner, 0) + 1
        return _holds_busy.set(owner)  # type: ignore[arg-type]

    def leave(self, owner: str, token: contextvars.Token) -> None:
        _holds_busy.reset(token)
        self._busy -= 1
        self._busy_by_owner[owner] -= 1

    @contextlib.contextmanager
    def working(self, owner: str) -> Iterator[None]:
        """Count the current task as busy on behalf of ``owner`` while inside."""
        token = self.enter(owner)
        try:
            yield
        finally:
            self.leave(owner, token)

    @contextlib.contextmanager
    def parked(self) -> Iterator[None]:
        """The current task waits on time or on another service: not busy meanwhile."""
        owner = _holds_busy.get()
        if not owner:
            yield
            return
        self._busy -= 1
        self._busy_by_owner[owner] -= 1
        try:
            yield
        finally:
            self._busy += 1
            self._busy_by_owner[owner] += 1

    def spawn(self, coro: Awaitable[Any], owner: str) -> asyncio.Task:
        """Run a job in the background, busy while it runs; keep a reference."""

        async def run() -> None:
            with self.working(owner):
                await coro

        # Count as busy from now, not from the task's first step, so that a
        # settle check between spawn and first run does not see an idle system.
        self._busy += 1
        self._busy_by_owner[owner] = self._busy_by_owner.get(owner, 0) + 1
        task = asyncio.get_running_loop().create_task(run())
        owned = self._tasks.setdefault(owner, set())
        owned.add(task)
        task.add_done_callback(owned.discard)
        # run() counts itself once started; release the pre-counted unit then
        # (call_soon is FIFO, so this runs right after the task's first step).
        asyncio.get_running_loop().call_soon(self._release_one, owner)
        return task

    def _release_one(self, owner: str) -> None:
        self._busy -= 1
        self._busy_by_owner[owner] -= 1

    async def cancel_tasks(self, owner: str) -> None:
        tasks = list(self._tasks.get(owner, ()))
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- moving time ----------------------------------------------------
    async def settle(self, turns: int = SETTLE_TURNS, limit: int = 100_000) -> None:
        """Return once nothing has been busy for ``turns`` consecutive loop turns."""
        quiet = 0
        for _ in range(limit):
            await asyncio.sleep(0)
            quiet = quiet + 1 if self._busy == 0 else 0
            if quiet >= turns:
                return
        raise RuntimeError(f"system did not settle ({self._busy} busy after {limit} loop turns)")

    def jump_to(self, target: float) -> None:
        """Move to ``target`` without firing anything due on the way: it stays pending (and
        ``next_due`` shows it) until the next ``advance_to``, which fires it at the clock's
        time then. Lets a coordinator bring every service of a world to an instant before
        any of them acts there (a scaled clock fires what is due as it runs anyway)."""
        self._check_move(target)
        if self.mode == "virtual":
            self._virtual = target  # (``_fires_to`` stays: nothing fires before the next move)
        else:
            self._virtual += target - self.now()
            self._arm()

    def _check_move(self, target: float) -> None:
        if self.mode == "real":
            raise ClockError("a real-time clock cannot be moved")
        if target < self.now():
            raise ClockError(f"the clock never moves backward (now {self.now_iso()}, asked {isoformat(target)})")
        if target > MAX_TIME:
            raise ClockError(f"cannot move the clock past {isoformat(MAX_TIME)}")

    async def advance(self, seconds: float) -> int:
        if seconds < 0:
            raise ClockError("the clock never moves backward")
        return await self.advance_to(self.now() + seconds)

    async def advance_to(self, target: float) -> int:
        """Move to ``target`` event by event, settling after each; return events fired."""
        self._check_move(target)
        fired = 0
        await self.settle()
        while True:
            due = self.next_due()
            if due is None or due > target:
                break
            if self.mode == "virtual":
                self._virtual = self._fires_to = max(self._virtual, due)
            else:
                self._virtual += due - self.now()
            fired += self._fire_due(due)
            await self.settle()
        if self.mode == "virtual":
            self._virtual = self._fires_to = max(self._virtual, target)
        else:
            self._virtual += max(0.0, target - self.now())
            self._arm()
        return fired


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)

import asyncio
import time

import pytest
from aiohttp import web

from caas_sim.simulators.kit.clock import Clock, ClockError
from caas_sim.simulators.kit.durations import format_duration, parse_duration


async def test_virtual_days_fire_due_events_in_order_in_milliseconds():
    clock = Clock("virtual")
    fired = []
    start = clock.now()
    for day in (3, 1, 2, 1):  # two events at the same time keep insertion order
        clock.call_later(day * 86400, lambda d=day: fired.append((d, clock.now() - start)))
    t0 = time.perf_counter()
    count = await clock.advance(4 * 86400)
    wall = time.perf_counter() - t0
    assert count == 4
    assert fired == [(1, 86400), (1, 86400), (2, 172800), (3, 259200)]
    assert clock.now() - start == 4 * 86400
    assert wall < 0.5  # milliseconds in practice; loose for a loaded CI machine


async def test_sleep_and_timeouts_are_clock_waits():
    clock = Clock("virtual")
    woke = []

    async def sleeper():
        await clock.sleep(30)
        woke.append(clock.now())
        await clock.wait_for(asyncio.get_running_loop().create_future(), timeout=60)

    task = clock.spawn(sleeper(), "svc")
    await clock.settle()
    assert clock.busy == 0 and clock.next_due() == clock.now() + 30
    await clock.advance(30)
    assert woke and clock.next_due() == clock.now() + 60
    await clock.advance(60)
    with pytest.raises(asyncio.TimeoutError):
        await task


async def test_never_backward_and_real_clock_refuses_moves():
    clock = Clock("virtual")
    with pytest.raises(ClockError):
        await clock.advance(-1)
    with pytest.raises(ClockError):
        await clock.advance_to(clock.now() - 10)
    with pytest.raises(ClockError):
        await Clock("real").advance(1)


async def test_scaled_clock_runs_faster_than_wall_time():
    clock = Clock("scaled", scale=1000)
    start, wall = clock.now(), time.monotonic()
    fired = asyncio.Event()
    clock.call_later(50, fired.set)  # 50 virtual seconds = 50 ms of wall time
    await asyncio.wait_for(fired.wait(), timeout=5)
    assert clock.now() - start >= 50
    assert time.monotonic() - wall < 5


async def test_settlement_covers_a_response_in_flight():
    """A caller parked on another service's answer is not busy, and the callee
    has not started yet: bytes in flight. Settling must not advance past it."""
    clock = Clock("virtual")
    answered_at = []

    async def callee(request):
        with clock.working("callee"):
            await asyncio.sleep(0)  # a real handler does some work
            return web.json_response({"t": clock.now()})

    app = web.Application()
    app.router.add_get("/", callee)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async def caller():
            async def get():
                async with session.get(f"http://127.0.0.1:{port}/") as r:
                    return await r.json()
            body = await clock.wait_for(get(), timeout=10)
            answered_at.append((clock.now(), body["t"]))

        for _ in range(20):
            start = clock.now()
            task = clock.spawn(caller(), "caller")
            clock.call_later(1, lambda: None)  # something due right after
            await clock.advance(1)
            await task
            # the answer arrived at the time it was sent, before the clock moved
            assert answered_at[-1] == (start, start)
    await runner.cleanup()


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("15m", 900), ("1h30m", 5400), ("3d", 259200),
                                          ("250ms", 0.25), (12, 12), ("2.5h", 9000), ("1w", 604800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "3 days", "-1s", "h", -3,
                                 # not finite, or longer than any clock can move (they overflowed a date)
                                 "nan", "inf", "1e400", float("nan"), "99999999999d", "1e20"])
def test_bad_durations_say_why(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize("seconds,text", [(0.25, "250ms"), (1.5, "1.5s"), (90, "1m30s"), (90.25, "1m30.25s"),
                                          (86400, "1d"), (5400, "1h30m")])
def test_format_duration_keeps_fractions_of_a_second(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), 0, -1])
def test_a_clock_scale_must_be_a_positive_number(scale):
    with pytest.raises(ValueError, match="positive"):
        Clock("scaled", scale=scale)


def test_journal_pages_with_since_and_reports_drops_not_clears():
    from caas_sim.simulators.kit.journal import Journal

    journal = Journal("svc", lambda: 0.0, capacity=3)
    for n in range(5):
        journal.record("event", "internal", event=f"e{n}")
    page = journal.read(since=0)
    assert [e["event"] for e in page["entries"]] == ["e2", "e3", "e4"] and page["dropped"] == 2
    assert journal.read(since=page["next"])["entries"] == []
    assert journal.read(since=10**30)["entries"] == []
    journal.clear()
    journal.record("event", "internal", event="e5")
    page = journal.read(since=0)
    assert [e["event"] for e in page["entries"]] == ["e5"] and page["dropped"] == 0


async def test_a_jump_fires_nothing_until_the_next_move():
    """What a coordinator's first pass does (POST /__admin/clock with fire: false): every
    clock reaches the instant before any service acts there."""
    clock = Clock("virtual")
    start, fired = clock.now(), []
    clock.call_later(60, lambda: fired.append(("timer", clock.now() - start)))
    clock.jump_to(start + 120)
    clock.call_later(0, lambda: fired.append(("due at once", clock.now() - start)))
    await clock.settle()
    assert fired == [] and clock.next_due() == start + 60 and clock.now() == start + 120
    assert await clock.advance_to(start + 120) == 2
    assert fired == [("timer", 120), ("due at once", 120)]
    with pytest.raises(ClockError, match="backward"):
        clock.jump_to(start)


def test_timers_fall_on_whole_milliseconds():
    # The admin protocol names instants to the millisecond: a coordinator in another process
    # can then move a clock exactly to a timer (rounded up: never early).
    clock = Clock("virtual")
    start = clock.now()
    assert clock.call_later(9.9494, lambda: None).when == start + 9.95
    assert clock.call_later(0.3, lambda: None).when == start + 0.3
    assert clock.call_later(1e-9, lambda: None).when == start


async def test_pending_timers_are_plain_values_the_collector_does_not_walk():
    """A timer is a flat tuple and an int (its callback by number): a hundred thousand orders
    on their way for weeks cost a full collection nothing but the heap's list."""
    import gc

    class Model:
        def __init__(self):
            self.fired = []

        def fire(self, key, step):
            self.fired.append((key, step))

    clock, model = Clock("virtual"), Model()
    on_fire = model.fire  # one bound method for every timer, as the models keep it
    timers = [clock.call_later(60 * (n + 1), on_fire, f"ord_{n}", n) for n in range(300)]
    deadlines = [clock.call_later(30, lambda: None) for _ in range(3)]  # one-off closures
    gc.collect()
    assert not gc.is_tracked(clock._calls) and not any(gc.is_tracked(t) for t in clock._timers)
    for timer in timers[::2]:
        timer.cancel()
    assert timers[0].cancelled and not timers[1].cancelled and clock.pending() == 153
    await clock.advance(3600 * 6)
    assert model.fired == [(f"ord_{n}", n) for n in range(1, 300, 2)]
    assert all(d.cancelled for d in deadlines) and clock.pending() == 0
    assert clock._callbacks._by_number == {}  # nothing kept once its timers are gone

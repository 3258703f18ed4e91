"""The core's calls to its peers time out on its clock: on a virtual clock a peer holding
its answer past our timeout is a timeout when the world's clock gets there, at no real
cost, and the calls waiting meanwhile are parked, so the world moves on."""

import asyncio

import pytest

from caas_core.clock import CoreClock
from tests.core import test_service_path as service_path
from tests.core.test_service_path import IOT_MODEL, buy, purchase

world = service_path.world  # database_url: tests/core/conftest.py


async def test_a_deadline_passes_when_the_virtual_clock_is_moved_past_it():
    clock = CoreClock("virtual")
    never = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(clock.within(never, 30))
    await asyncio.sleep(0)
    assert clock.parked == 1 and clock.next_due() == clock.now() + 30
    clock.move_to(clock.now() + 29)
    await asyncio.sleep(0)
    assert not waiting.done()
    clock.move_to(clock.now() + 1)
    with pytest.raises(TimeoutError):
        await waiting
    assert clock.parked == 0 and clock.next_due() is None and never.cancelled()


async def test_an_answer_before_the_deadline_is_the_answer():
    clock = CoreClock("virtual")

    async def answer():
        await asyncio.sleep(0)
        return 42

    assert await clock.within(answer(), 30) == 42
    assert clock.parked == 0 and clock.next_due() is None


async def test_a_virtual_clock_nobody_moves_gives_up_in_real_time_too():
    with pytest.raises(TimeoutError):
        await CoreClock("virtual").within(asyncio.get_running_loop().create_future(), 0.05)


async def test_a_peer_holding_the_activation_past_our_timeout_is_retried_after_the_clock_passes_it(world):
    stack, http, iot, _ = world
    stack.service("iot").faults.add({"id": "held", "match": {"operation": "activateService"}, "times": 1,
                                     "action": {"type": "timeout", "params": {"seconds": 90}}})
    t0 = stack.clock.now()
    _, bought = await buy(http, iot["healthy"])
    await stack.advance("10m")
    assert (await purchase(http, bought["purchaseId"]))["status"] == "ACTIVE"
    created = [r.created - t0 for r in stack.running["iot"].app[IOT_MODEL].requests.values()
               if r.vin == iot["healthy"]]
    # the first request held, then dropped; our 60 s attempt timeout passed on the clock, then
    # the 1 min backoff: the retry at 2 min (timed out in real time, the clock standing still,
    # it would have come at 1 min)
    assert created == [120], created

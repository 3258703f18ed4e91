"""A world run by URL (``--target``) whose clock will not go where a scenario moves it: the
run ends there, naming the service, instead of going on with clocks that disagree."""

import pytest

from caas_sim.scenarios.scenario.coordinator import RemoteCoordinator
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.kit.clock import ClockError


async def test_a_clock_moved_ahead_by_someone_else_meanwhile_ends_the_move_naming_the_service():
    async with Stack(services=["iot", "payments"], seed=0) as stack:
        world = await RemoteCoordinator({name: stack.url(name) for name in ("iot", "payments")}).start()
        try:
            admin = world._admins["payments"]
            move = admin.set_clock

            async def another_run_moved_it_first(instant, **kwargs):
                await stack.advance(3600)  # another run of the same world, between our read and our move
                return await move(instant, **kwargs)

            admin.set_clock = another_run_moved_it_first
            with pytest.raises(ClockError, match=r"payments's clock cannot move to .*never moves backward"):
                await world.advance_to(world.now() + 60)
        finally:
            await world.close()


async def test_a_clock_behind_the_world_is_brought_to_it_before_a_scenario():
    """A core (re)started on a virtual clock begins at its own start, days behind a world that
    had moved on. Before, it stayed there until the first move, which then fired its timers
    at once: an OTA attempt's 60 s timed out with its callback (attempts: expected 1, got 2)."""
    async with Stack(services=["iot"], seed=0) as ahead, Stack(services=["payments"], seed=0) as behind:
        await ahead.advance(6 * 86400)
        world = await RemoteCoordinator({"iot": ahead.url("iot"), "core": behind.url("payments")}).start()
        try:
            assert behind.clock.now() == ahead.clock.now() == world.now()
            await ahead.advance(3600)  # as if the core had been restarted on its own start meanwhile
            await world.reset()
            assert behind.clock.now() == ahead.clock.now() == world.now()
        finally:
            await world.close()

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

import pytest

from caas_core.clock import DEFAULT_EPOCH, ClockError, CoreClock


def test_virtual_clock_moves_only_forward_and_only_when_told():
    clock = CoreClock("virtual")
    assert clock.now() == DEFAULT_EPOCH
    clock.move_to(DEFAULT_EPOCH + 3600)
    assert clock.now() == DEFAULT_EPOCH + 3600 and clock.describe()["now"] == "2026-01-05T09:00:00.000Z"
    with pytest.raises(ClockError, match="backward"):
        clock.move_to(DEFAULT_EPOCH)
    with pytest.raises(ClockError, match="past"):
        clock.move_to(1e12)


def test_real_clock_refuses_to_move_and_specs_parse():
    with pytest.raises(ClockError, match="real-time"):
        CoreClock("real").move_to(0)
    assert CoreClock.parse("scaled:120").scale == 120
    for bad in ("scaled:x", "virtual:2", "sundial"):
        with pytest.raises(ValueError):
            CoreClock.parse(bad)


async def test_a_move_that_does_not_expire_keeps_the_deadlines_for_the_next_one():
    import asyncio

    clock = CoreClock("virtual")
    never = asyncio.get_running_loop().create_future()
    call = asyncio.ensure_future(clock.within(never, timeout=60))
    await asyncio.sleep(0)
    clock.move_to(DEFAULT_EPOCH + 60, expire=False)  # a coordinator's first pass (fire: false)
    await asyncio.sleep(0)
    assert not call.done() and clock.next_due() == DEFAULT_EPOCH + 60
    clock.expire_passed()
    with pytest.raises(TimeoutError):
        await call

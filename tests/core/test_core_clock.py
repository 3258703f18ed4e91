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

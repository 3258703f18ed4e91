"""The schedules VSS keeps per vehicle answer exactly what a fresh computation answers,
as the clock moves, as workshops record services, and after a reset."""

from caas_sim.simulators.fleet import Fleet
from caas_sim.simulators.kit.clock import Clock
from caas_sim.simulators.kit.service import Service
from caas_sim.simulators.vss.api import CONTRACT
from caas_sim.simulators.vss.model import VssModel
from caas_sim.simulators.vss.vehicles import MAGIC_SERIALS

DAY = 86400.0
STATUS = "getMaintenanceStatus"
MAGIC = {name: serial for serial, name in MAGIC_SERIALS.items()}


def world(seed=4):
    clock = Clock("virtual")
    service = Service("vss", CONTRACT, clock=clock, seed=seed)
    return clock, service, VssModel(service, Fleet(seed, epoch=clock.now()))


def fresh(model, vin):
    """The status without any schedule kept."""
    model._schedules.clear()
    return model.maintenance_status(vin, STATUS)


async def test_a_kept_schedule_answers_as_a_fresh_one_while_the_clock_moves():
    clock, _, model = world()
    vins = [model.fleet.vin_at(i * 4099) for i in range(20)] + [
        model.fleet.vin_at(serial) for name, serial in MAGIC.items() if name != "unknown_in_vss"]
    for step in (0, 0.5, 10, 31, 200, 400, 1200):
        await clock.advance_to(model.epoch + step * DAY)
        kept = [model.maintenance_status(vin, STATUS) for vin in vins]
        assert kept == [fresh(model, vin) for vin in vins]
        assert kept == [model.maintenance_status(vin, STATUS) for vin in vins]  # kept again, same answer


async def test_a_workshop_record_and_a_reset_replace_the_kept_schedule():
    clock, service, model = world()
    vin = model.fleet.vin_at(MAGIC["one_block_overdue"])
    before = model.maintenance_status(vin, STATUS)
    assert before["blocks"][2]["compliancePercent"] < 80
    await clock.advance(DAY)
    for service_type in ("BRAKE_PADS", "BRAKE_FLUID"):
        model.record_service(vin, "OFF-ES-MAD01", "BRAKES", service_type, clock.now(), None, None, "recordService")
    after = model.maintenance_status(vin, STATUS)
    assert after["blocks"][2]["compliancePercent"] == 100
    assert after == fresh(model, vin)

    await service.reset()
    again = model.maintenance_status(vin, STATUS)
    assert again["blocks"][2] == before["blocks"][2] and again != after

"""``caas-sim bench sim --memory``: what a touched vehicle costs the IoT simulator.

The simulator runs in this process on a virtual clock (a fleet of a million vehicles);
``vehicles`` distinct vehicles get one activation each through the model, as the
handler would call it (the journal records every event). Python's heap is measured with
tracemalloc: after the activations (the requests in flight), once they have finished,
and once the finished requests have expired (``REQUEST_TTL`` of clock time later):
what stays is the fleet's state, which must scale to millions of vehicles.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

#: Bytes per touched vehicle once its finished request has expired.
TARGET_BYTES = 500


async def _measure(vehicles: int) -> dict[str, float]:
    from caas_sim.simulators.iot.api import MODEL_KEY, create_app
    from caas_sim.simulators.iot.model import REQUEST_TTL
    from caas_sim.simulators.kit.config import SimConfig

    app = create_app(SimConfig(seed=0, options={"fleet_size": 1_000_000}))
    model, clock = app[MODEL_KEY], app[MODEL_KEY].service.clock
    fleet = model.fleet
    # The bounded parts (journal ring, recent profiles) are filled first:
    # their size does not grow with the fleet.
    configuration, duration = {"featureFlags": ["performance_boost"]}, {"type": "PERMANENT"}
    for i in range(12_000):
        model.activate(fleet.vin_at(999_000 - i), "perf-boost", configuration, duration)
    await clock.advance(REQUEST_TTL + 3600)
    model.prune()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    figures = {}
    for i in range(vehicles):  # each VIN made here: its text is what a request body brings
        model.activate(fleet.vin_at(i), "perf-boost", {"featureFlags": ["performance_boost"]}, {"type": "PERMANENT"})
    gc.collect()
    figures["in flight"] = (tracemalloc.get_traced_memory()[0] - base) / vehicles
    await clock.advance(3600)  # every activation ends within minutes
    gc.collect()
    figures["finished"] = (tracemalloc.get_traced_memory()[0] - base) / vehicles
    await clock.advance(REQUEST_TTL)
    model.prune()
    gc.collect()
    figures["expired"] = (tracemalloc.get_traced_memory()[0] - base) / vehicles
    tracemalloc.stop()
    assert len(model.vehicles) >= vehicles
    return figures


def bench_memory(vehicles: int = 100_000) -> bool:
    print(f"memory: IoT simulator, {vehicles:,} distinct vehicles activated once each (tracemalloc)")
    figures = asyncio.run(_measure(vehicles))
    for stage, per_vehicle in figures.items():
        print(f"  {stage:<10}: {per_vehicle:8.0f} bytes per vehicle")
    met = figures["expired"] <= TARGET_BYTES
    print(f"  once finished requests expired: {figures['expired']:.0f} bytes per touched vehicle "
          f"(target <= {TARGET_BYTES}): {'ok' if met else 'MISSED'}")
    return met

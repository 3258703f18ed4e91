"""Between two scenarios run against services by URL (``--target``), the world is reset in
the pytest plugin's order: the simulators first (a reset drops the requests one still held),
the core once they are quiet, then the simulators' journals, emptied of what the core did
meanwhile about the old world."""

from caas_sim.scenarios.scenario.coordinator import RemoteCoordinator
from caas_sim.scenarios.stack import Stack


async def test_the_simulators_are_reset_before_the_core_and_their_journals_emptied_after_it():
    async with Stack(services=["iot", "payments"], seed=0, core={}) as stack:
        # the core first, as `--target core=...,iot=...` lists it
        urls = {name: stack.url(name) for name in ("core", "iot", "payments")}
        world = await RemoteCoordinator(urls).start()
        calls = []
        try:
            for name, admin in world._admins.items():
                for method in ("reset", "clear_journal"):
                    setattr(admin, method, _recorded(calls, name, method, getattr(admin, method)))
            await world.reset()
        finally:
            await world.close()
    assert calls == [("iot", "reset"), ("payments", "reset"), ("core", "reset"),
                     ("iot", "clear_journal"), ("payments", "clear_journal")]


def _recorded(calls: list, name: str, method: str, call):
    """``call`` that first notes ``(name, method)`` in ``calls``."""
    def record():
        calls.append((name, method))
        return call()
    return record

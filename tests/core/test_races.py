"""Decisions that race: each one re-reads the purchase in its own write transaction, so the
later one sees the earlier one's result instead of overwriting it."""

from caas_core.api.app import CORE_KEY
from caas_core.flows import lifecycle
from tests.core import test_service_path as service_path
from tests.core.test_service_path import buy, purchase

world = service_path.world  # database_url: tests/core/conftest.py


class WithdrawnMidCommand:
    """The IoT client, except that the customer withdraws while the command is on its way."""

    def __init__(self, core):
        self.core, self.real = core, core.iot

    async def activate(self, vin, service_id, *args, **kwargs):
        purchase_id = kwargs["key"].split(":")[0]
        await lifecycle.withdraw(self.core, purchase_id, "race")
        return await self.real.activate(vin, service_id, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


async def test_a_withdrawal_while_the_activation_command_is_in_flight_wins_and_the_feature_goes_off(world):
    stack, http, iot, _ = world
    core = stack.running["core"].app[CORE_KEY]
    core.iot = WithdrawnMidCommand(core)
    _, bought = await buy(http, iot["healthy"])
    await stack.advance("5m")  # the command lands, the vehicle activates, the callback arrives
    done = await purchase(http, bought["purchaseId"])
    assert done["status"] == "WITHDRAWN" and done["refundPending"] == done["price"]
    calls = [(e["method"], e["path"]) for e in stack.service("iot").journal.entries() if e["kind"] == "request"]
    assert ("POST", "/ota/deactivate") in calls  # what reached the vehicle is switched off again

"""The OTA retry policy's schedule as the core runs it (specification, "OTA Retry Logic and
Failure Handling": "Exponential (e.g., 1min, 5min, 15min, 30min)", "Number of retries:
Configurable (e.g., 3-5 attempts)"): with five attempts every wait of the schedule is used,
the 30 minutes included."""

from itertools import pairwise

import aiohttp
import pytest

from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.iot.api import MODEL_KEY as IOT_MODEL
from tests.core.test_service_path import KEYS, buy, purchase


@pytest.fixture
async def five_attempts(tmp_path):
    stack = Stack(services=["iot", "vss", "payments"], seed=0,
                  core={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", "api_keys": KEYS,
                        "ota": {"attempts": 5}})
    async with stack, aiohttp.ClientSession(stack.url("core")) as http:
        yield stack, http, stack.running["iot"].app[IOT_MODEL]
        assert stack.violations() == []


async def test_an_offline_vehicle_is_tried_after_1_5_15_and_30_minutes(five_attempts):
    stack, http, iot = five_attempts
    vin = iot.fleet.magic_vins()["always_offline"]
    t0 = stack.clock.now()
    _, bought = await buy(http, vin)
    await stack.advance("3h")
    failed = await purchase(http, bought["purchaseId"])
    assert failed["status"] == "ACTIVATION_FAILED" and failed["attempts"] == 5
    created = [round(r.created - t0) for r in iot.requests.values() if r.vin == vin]
    # each attempt ends 60 s after it was sent (the vehicle never answers: our attempt
    # timeout), then the schedule's wait: 1, 5, 15 and 30 minutes
    waits = [later - earlier - 60 for earlier, later in pairwise(created)]
    assert waits == [60, 300, 900, 1800], created

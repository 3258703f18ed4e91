"""The core's log lines carry the correlation id its request goes by: the caller's
``X-Correlation-Id``, or the one the core makes for a request without it and sends on to
the simulators, so that one id joins the core's lines to theirs."""

import io
import json
import logging

import aiohttp

from caas_sim import logs
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.iot.api import MODEL_KEY as IOT_MODEL

KEYS = {"k-c1": {"role": "customer", "subject": "c-1"}}
PURCHASE = {"serviceId": "heated-seats", "durationType": "PERMANENT",
            "paymentMethod": {"type": "CARD", "token": "pm_card_visa"}}


async def test_a_purchase_without_a_correlation_id_is_logged_under_the_id_the_simulators_got(tmp_path):
    out = io.StringIO()
    logs.configure(level="INFO", fmt="json", stream=out)
    stack = Stack(services=["iot", "vss", "payments"], seed=0, with_sink=False, access_log=True,
                  core={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", "api_keys": KEYS})
    try:
        async with stack, aiohttp.ClientSession(stack.url("core")) as http:
            vin = stack.running["iot"].app[IOT_MODEL].fleet.magic_vins()["healthy"]
            async with http.post(f"/customers/c-1/vehicles/{vin}/purchases", json=PURCHASE,
                                 headers={"Authorization": "Bearer k-c1"}) as r:
                assert r.status == 201, await r.text()
    finally:
        logging.getLogger().handlers.clear()
    access = [line for line in map(json.loads, out.getvalue().splitlines()) if line["logger"] == logs.ACCESS_LOGGER]
    [core] = [line for line in access if "/purchases HTTP" in line["message"]]
    [gateway] = [line for line in access if "POST /payments/initiate" in line["message"]]
    assert gateway["correlationId"] and core["correlationId"] == gateway["correlationId"], (core, gateway)

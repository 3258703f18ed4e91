"""The core's typed clients against the running simulators: every call conforms to
their contracts (the simulators journal any violation) and failures are classified."""

import aiohttp
import pytest

from caas_core.clients.http import JsonClient, Malformed, Rejected, Unavailable
from caas_core.clients.upstreams import IotClient, PaymentsClient, VssClient
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.fleet import Fleet
from caas_sim.simulators.iot.api import MODEL_KEY


@pytest.fixture
async def world():
    async with Stack(services=["iot", "vss", "payments"], seed=0) as stack, aiohttp.ClientSession() as session:
        client = lambda name: JsonClient(name, stack.url(name), session, timeout=5)
        yield stack, IotClient(client("iot")), VssClient(client("vss")), PaymentsClient(client("payments"))
        assert stack.violations() == []


async def test_activate_read_status_and_classify_failures(world):
    stack, iot, _, _ = world
    vin = stack.running["iot"].app[MODEL_KEY].fleet.magic_vins()["healthy"]
    accepted = await iot.activate(vin, "perf", ["performance_boost"], {}, {"type": "PERMANENT"}, key="k1",
                                  correlation_id="c1", timeout=5)
    assert accepted.status in ("QUEUED", "IN_PROGRESS") and accepted.requestId
    assert (await iot.vehicle_status(vin, correlation_id="c2")).vin == vin
    with pytest.raises(Rejected) as exc:
        await iot.activate("WCA00000000000000", "perf", ["performance_boost"], {}, {"type": "PERMANENT"},
                           key="k2", correlation_id="c3", timeout=5)
    assert exc.value.status == 404
    stack.service("iot").faults.add({"action": {"type": "http_error", "params": {"status": 503, "retry_after": 30}},
                                     "times": 1})
    with pytest.raises(Unavailable) as exc:
        await iot.vehicle_status(vin, correlation_id="c4")
    assert exc.value.status == 503 and exc.value.retry_after == 30
    stack.service("iot").faults.add({"action": {"type": "malformed_body"}, "times": 1})
    with pytest.raises(Malformed) as exc:  # a success we cannot read: as good as no answer
        await iot.vehicle_status(vin, correlation_id="c4b")
    assert exc.value.status == 200 and isinstance(exc.value, Unavailable)


async def test_vss_and_payments_round_trip(world):
    stack, _, vss, payments = world
    vin = Fleet(0).vin_at(42)
    status = await vss.maintenance_status(vin, correlation_id="c5", timeout=5)
    assert status.vin == vin and len(status.blocks) == 6
    paid = await payments.initiate("SERVICE", 4900, "EUR", "CARD", "pm_card_visa", customer_id="c-1",
                                   order_id="pur-1", description="Performance boost", key="pay-1", correlation_id="c6")
    assert paid.status == "AUTHORIZED"
    refund = await payments.refund(paid.paymentId, None, "EUR", "OTA_ACTIVATION_FAILURE", key="r-1",
                                   correlation_id="c7")
    assert refund.status == "PENDING"  # paid out of settled funds: it completes at settlement
    with pytest.raises(Rejected) as exc:  # a reason the contract does not know is caught at the gateway
        await payments.refund(paid.paymentId, None, "EUR", "BECAUSE", key="r-2", correlation_id="c8")
    assert exc.value.status == 400 and "reason" in str(exc.value)
    stack.service("payments").journal.clear()  # that violation was the point


async def test_an_unreachable_system_is_unavailable():
    async with aiohttp.ClientSession() as session:
        client = VssClient(JsonClient("vss", "http://127.0.0.1:9", session, timeout=1))
        with pytest.raises(Unavailable, match="vss"):
            await client.maintenance_status("WCA00000000000000", correlation_id="c", timeout=1)


async def test_an_answer_without_the_contracts_shape_is_malformed():
    """A 2xx whose body is JSON but not what the contract gives the answer: the typed client
    raises ``Malformed`` (worth retrying, as no answer is) naming what is wrong."""
    from aiohttp import web

    async def accepted(request):
        return web.json_response({"requestId": 42, "status": "QUEUED"}, status=202)

    app = web.Application()
    app.router.add_post("/ota/activate", accepted)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            iot = IotClient(JsonClient("iot", f"http://127.0.0.1:{port}", session, timeout=5))
            with pytest.raises(Malformed, match="requestId: Input should be a valid string") as exc:
                await iot.activate("WCAC6SN32SZ999908", "perf", ["performance_boost"], {}, {"type": "PERMANENT"},
                                   key="k", correlation_id="c", timeout=5)
            assert exc.value.status == 202
    finally:
        await runner.cleanup()

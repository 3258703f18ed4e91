"""Every webhook our simulators send verifies with the `standardwebhooks` reference library
(and fails with another secret, or once tampered with): IoT, payments, factory, UK registry.
The requests that cause them are each contract's own first request example."""

import time

import pytest
import yaml
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from caas_sim import catalogue
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.kit.contract import CONTRACTS_DIR

SECRET = "whsec_" + "c2ltdWxhdG9yLXNpZ25hdHVyZS10ZXN0LXNlY3JldA=="
#: service -> (contract, operation whose example starts something that calls back)
TRIGGERS = {"iot": ("iot.yaml", "activateService"), "payments": ("payments.yaml", "initiatePayment"),
            "factory": ("factory.yaml", "placeOrder"), "registry-uk": ("registry-uk.yaml", "createRegistration")}


def example_request(contract: str, op_id: str) -> tuple[str, str, dict]:
    doc = yaml.safe_load((CONTRACTS_DIR / contract).read_text())
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and op.get("operationId") == op_id:
                media = op["requestBody"]["content"]["application/json"]
                value = media.get("example") or next(iter(media["examples"].values()))["value"]
                return method.upper(), path, value
    raise LookupError(op_id)


def test_every_webhook_sender_of_the_catalogue_has_a_trigger():
    """A new sender must say here which example request makes it call back, or it goes unchecked."""
    assert set(TRIGGERS) == set(catalogue.WEBHOOK_SENDERS)
    assert all(contract in catalogue.entry(name).contracts for name, (contract, _) in TRIGGERS.items())


async def test_every_simulator_webhook_verifies_with_the_reference_library():
    received: list[tuple[str, bytes, dict]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append((request.match_info["service"], await request.read(), dict(request.headers)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/{service}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with Stack(services=list(TRIGGERS), seed=0, with_sink=False) as stack:
            import aiohttp

            async with aiohttp.ClientSession() as http:
                for service, (contract, op_id) in TRIGGERS.items():
                    stack.service(service).webhooks.subscribe("*", f"{receiver}/hooks/{service}", SECRET)
                    method, path, body = example_request(contract, op_id)
                    async with http.request(method, stack.url(service) + path, json=body) as r:
                        assert r.status < 300, (service, r.status, await r.text())
            await stack.advance("30d")
    finally:
        await runner.cleanup()
    assert {service for service, _, _ in received} == set(TRIGGERS)
    verifier, impostor = Webhook(SECRET), Webhook("whsec_" + "b3RoZXItc2VjcmV0LW9mLWFub3RoZXItc2VuZGVy")
    for service, body, headers in received:
        payload = verifier.verify(body, headers)
        assert isinstance(payload, dict) and payload, service
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 300  # wall time, not the virtual clock
        with pytest.raises(WebhookVerificationError):
            impostor.verify(body, headers)
        with pytest.raises(WebhookVerificationError):
            verifier.verify(body + b" ", headers)

"""A core we did not write, for the load tests: webhook receivers at its own paths, each
verifying Standard Webhooks signatures with its own secret, and a purchase API of its own
shape (an order per vehicle, ACTIVE after its second look); no admin routes. It runs on an event loop in a thread of the test process; the load
itself runs in another process (`caas-sim load`)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

RECEIVERS = {"iot": "/hooks/vehicle-status", "payments": "/hooks/money", "factory": "/hooks/plant"}
SECRETS = {"iot": "whsec_c3RhbmQtaW4taW90LXNlY3JldC0wMDAwMDAwMA==",
           "payments": "whsec_c3RhbmQtaW4tcGF5bWVudHMtc2VjcmV0LTAwMA==",
           "factory": "whsec_c3RhbmQtaW4tZmFjdG9yeS1zZWNyZXQtMDAwMA=="}
CUSTOMER_KEY = "standin-customer"


@dataclass
class StandIn:
    failing: bool = False  # answer every request 500
    never_on: bool = False  # an order is PENDING for ever (a core that activates nothing)
    verified: Counter = field(default_factory=Counter)   # sender -> webhooks with a valid signature
    rejected: Counter = field(default_factory=Counter)   # sender -> webhooks whose signature did not verify
    events: Counter = field(default_factory=Counter)     # (sender, payload "status" or "type") -> count
    orders: dict[str, dict] = field(default_factory=dict)  # orderId -> what was asked, and looks at it
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        for sender, path in RECEIVERS.items():
            app.router.add_post(path, self._receiver(sender))
        app.router.add_post("/v2/vehicles/{vin}/orders", self._order)
        app.router.add_get("/v2/orders/{orderId}", self._order_status)
        app.router.add_route("*", "/{tail:.*}", self._elsewhere)
        return app

    def _receiver(self, sender: str):
        hook = Webhook(SECRETS[sender])

        async def receive(request: web.Request) -> web.Response:
            if self.failing:
                return web.json_response({"title": "down for maintenance"}, status=500)
            body = await request.text()
            try:
                payload = hook.verify(body, {k.lower(): v for k, v in request.headers.items()})
            except WebhookVerificationError:
                self.rejected[sender] += 1
                return web.json_response({"title": "bad signature"}, status=401)
            self.verified[sender] += 1
            self.events[sender, str(payload.get("status") or payload.get("type"))] += 1
            return web.Response(status=204)
        return receive

    async def _order(self, request: web.Request) -> web.Response:
        body = await request.json()
        if request.headers.get("Authorization") != f"Bearer {CUSTOMER_KEY}" or set(body) != {"product", "card"}:
            return web.json_response({"title": "refused", "body": body}, status=400)
        order_id = f"ord-{len(self.orders) + 1}"
        self.orders[order_id] = {"vin": request.match_info["vin"], **body, "looks": 0}
        return web.json_response({"orderId": order_id, "state": "PENDING"}, status=202)

    async def _order_status(self, request: web.Request) -> web.Response:
        order = self.orders[request.match_info["orderId"]]
        order["looks"] += 1
        done = order["looks"] >= 2 and not self.never_on
        return web.json_response({"orderId": request.match_info["orderId"], "state": "ON" if done else "PENDING",
                                  "opened": "2026-12-07T10:00:00+00:00",
                                  **({"finished": "2026-12-07T10:00:42+00:00"} if done else {})})

    async def _elsewhere(self, request: web.Request) -> web.Response:
        return web.json_response({"title": "Not Found"}, status=500 if self.failing else 404)


class Running:
    """``with Running(StandIn()) as standin: ...`` serves it on a free port."""

    def __init__(self, standin: StandIn) -> None:
        self.standin = standin
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> StandIn:
        self.thread.start()
        self.runner = web.AppRunner(self.standin.app())
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)
        return self.standin

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.standin.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

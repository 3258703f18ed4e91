"""A webhook receiver standing in for the core until one is in the stack.

It verifies Standard Webhooks signatures with the reference library, answers
401 to a bad one, counts redeliveries of the same ``webhook-id`` and keeps
what it received (virtual time, service, payload) for tests and the demo.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from caas_sim.simulators.kit.clock import Clock
from caas_sim.simulators.kit.webhooks import DEFAULT_SECRET


@dataclass(slots=True)
class Received:
    at: float
    service: str
    webhook_id: str
    payload: dict
    duplicate: bool


class WebhookSink:
    def __init__(self, clock: Clock, secret: str = DEFAULT_SECRET, secrets: dict[str, str] | None = None):
        self.clock = clock
        self.verifier = Webhook(secret)
        #: Per sending service (``/webhooks/{service}``), where it signs with its own secret.
        self.verifiers = {service: Webhook(s) for service, s in (secrets or {}).items()}
        self.received: list[Received] = []
        self.rejected = 0
        self._seen: set[str] = set()
        self.listeners: list = []  # called with each first delivery (duplicates are only recorded)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/webhooks/{service}", self.receive)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verifier = self.verifiers.get(request.match_info["service"], self.verifier)
            verifier.verify(body, dict(request.headers), json_parse=False)
        except WebhookVerificationError as exc:
            self.rejected += 1
            return web.json_response({"title": "Invalid signature", "detail": str(exc)}, status=401)
        webhook_id = request.headers["webhook-id"]
        duplicate = webhook_id in self._seen
        self._seen.add(webhook_id)
        received = Received(self.clock.now(), request.match_info["service"], webhook_id, orjson.loads(body), duplicate)
        self.received.append(received)
        if not duplicate:
            for listener in self.listeners:
                listener(received)
        return web.Response(status=204)

    def payloads(self, service: str | None = None, *, unique: bool = True) -> list[dict]:
        return [r.payload for r in self.received
                if (service is None or r.service == service) and not (unique and r.duplicate)]

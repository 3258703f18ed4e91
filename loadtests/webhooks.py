"""Webhook load: factory status, payment settlement and OTA status callbacks, validly signed.

Measures the core's acknowledgement latency and throughput at its receivers: the
reference core's (``/caas/webhooks/{ota-status,payments,factory}``) or those the target
description gives (``--caas-config``: a path and a secret per sender), each signed with its
receiver's secret. Bodies come from the senders'
contracts (``caas_sim.loadtests.bodies``); a share is delivered twice (``--caas-duplicate-share``:
the same webhook-id, re-signed, as a retry is) and a share out of order
(``--caas-reorder-share``: held back, sent after the next). Duplicates are reported
under their own name, so the dedupe path's latency shows separately.

    locust -f loadtests/webhooks.py --host http://127.0.0.1:8000
"""

from __future__ import annotations

import random
import uuid

import locust  # noqa: F401  first: gevent must patch ssl before anything imports it
from locust import FastHttpUser, constant, task

from caas_sim.loadtests import common, figures  # noqa: F401  figures: the summary, fail fast
from caas_sim.loadtests.bodies import BodyFactory
from caas_sim.loadtests.target import SENT_WEBHOOKS

POOL = 32  # bodies generated per user and receiver at start; each send gets a fresh webhook-id
#: How often each sender's webhooks come, relative to the others (OTA callbacks the most).
WEIGHTS = {"iot": 3, "payments": 2, "factory": 1}


class WebhookSender(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        options = common.options(self.environment)
        target = common.target(self.environment)
        self.receivers = target.receivers
        self.senders = list(target.senders)  # those the core receives
        self.weights = [WEIGHTS[sender] for sender in self.senders]
        self.duplicate_share, self.reorder_share = options.caas_duplicate_share, options.caas_reorder_share
        seed = options.caas_seed * 1000 + id(self) % 1000
        self.rng = random.Random(seed)
        factory = BodyFactory(seed)
        overlays = {"iot": lambda n: {"requestId": f"ota_load{n}", "status": self.rng.choice(["ACTIVATED", "FAILED"])},
                    "payments": lambda n: {"paymentId": f"pay_load{uuid.uuid4().hex[:16]}"},
                    "factory": lambda n: {}}
        self.bodies = {sender: [common.dumps(factory.webhook(sender, webhook, **overlays[sender](n)))
                                for n in range(POOL)] for sender, webhook in SENT_WEBHOOKS.items()
                       if sender in self.senders}
        self.sent: list[tuple[str, str, bytes]] = []  # recent (sender, id, body), for duplicates
        self.held: tuple[str, str, bytes] | None = None  # a webhook overtaken by the next one

    def _post(self, sender: str, webhook_id: str, body: bytes, name: str) -> None:
        receiver = self.receivers[sender]
        self.client.post(receiver.path, data=body, name=name, headers=common.sign(receiver.secret, webhook_id, body))

    def _send(self, sender: str) -> None:
        message = (sender, f"msg_{uuid.uuid4().hex}", self.rng.choice(self.bodies[sender]))
        if self.held is None and self.rng.random() < self.reorder_share:
            self.held = message  # goes after the next one
            return
        self._post(*message, name=f"webhook {sender}")
        if self.held is not None:
            held, self.held = self.held, None
            self._post(*held, name=f"webhook {held[0]} (reordered)")
        self.sent = [*self.sent[-15:], message]
        if self.rng.random() < self.duplicate_share:
            again = self.rng.choice(self.sent)
            self._post(*again, name=f"webhook {again[0]} (duplicate)")

    @task
    def webhook(self) -> None:
        self._send(self.rng.choices(self.senders, self.weights)[0])

"""A core with its simulators in a thread of its own, for the synchronous security tests:
``call`` runs a coroutine on its loop (to look into the core's database)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, Self

from caas_core.api.app import CORE_KEY
from caas_sim.scenarios.stack import Stack

#: Who is who in the security tests.
KEYS = {"key-cust-1-s3cr3t": {"role": "customer", "subject": "c-1"},
        "key-cust-2-s3cr3t": {"role": "customer", "subject": "c-2"},
        "key-dealer-s3cr3t": {"role": "dealership", "subject": "ES-MAD-001"},
        "key-ops-s3cr3t": {"role": "operator", "subject": "ops"}}
KEY_OF = {("customer", "c-1"): "key-cust-1-s3cr3t", ("customer", "c-2"): "key-cust-2-s3cr3t",
          ("dealership", "ES-MAD-001"): "key-dealer-s3cr3t", ("operator", "ops"): "key-ops-s3cr3t"}
WEBHOOK_SECRET = "whsec_" + "c2VjdXJpdHktdGVzdC13ZWJob29rLXNlY3JldC0wMQ=="  # security-test-webhook-secret-01
ADMIN_TOKEN = "admin-t0ken-s3cr3t"


class LiveCore:
    def __init__(self, **stack: Any):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.stack = Stack(**stack)

    def call(self, coro: Coroutine, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def __enter__(self) -> Self:
        self.thread.start()
        self.call(self.stack.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self.stack.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        return self.stack.url("core")

    @property
    def core(self):
        return self.stack.running["core"].app[CORE_KEY]

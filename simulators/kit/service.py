"""A simulator's shared machinery: clock, journal, faults, idempotency, webhooks."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .clock import Clock, isoformat
from .contract import Contract
from .contract import load as load_contract
from .errors import ResetWhileHeld
from .faults import FaultEngine, FaultRule
from .idempotency import IdempotencyStore
from .journal import Journal
from .metrics import ServiceMetrics
from .webhooks import WebhookDispatcher


class Service:
    """Everything one simulator needs besides its model."""

    def __init__(self, name: str, contract: str | Path | Contract, *, clock: Clock | None = None, seed: int = 0,
                 journal_capacity: int = 10_000, journal_path: str | Path | None = None,
                 admin_token: str | None = None, unique_webhook_ids: bool = False):
        self.name = name
        self.seed = seed
        self.clock = clock or Clock("virtual")
        self.contract = contract if isinstance(contract, Contract) else load_contract(str(contract))
        self.metrics = ServiceMetrics(name, self.clock.now)
        self.journal = Journal(name, self.clock.now, capacity=journal_capacity, jsonl_path=journal_path,
                               observer=self.metrics.observe)
        self.faults = FaultEngine(seed=seed, now=self.clock.now, record=self.journal.record)
        self.idempotency = IdempotencyStore(self.clock.now)
        self.webhooks = WebhookDispatcher(name, self.clock, self.journal, self.contract, seed=seed,
                                          unique_ids=unique_webhook_ids)
        self.admin_token = admin_token
        self.reset_hooks: list[Callable[[], Any]] = []
        self.correlation_ids = itertools.count(1)
        self.resets = 0  # how a request held across a reset tells (``hold``)

    # Shorthands a model uses for time-dependent rules.
    def later(self, delay: float, callback: Callable[..., Any], *args: Any):
        return self.clock.call_later(delay, callback, *args, owner=self.name)

    def at(self, when: float, callback: Callable[..., Any], *args: Any):
        return self.clock.call_at(when, callback, *args, owner=self.name)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        return self.clock.spawn(coro, self.name)

    async def hold(self, seconds: float) -> None:
        """Hold the request being answered for ``seconds`` of clock time (an injected latency,
        a slow back end). A reset wakes it early and ends it with ``ResetWhileHeld``: left to
        go on, it would act on the world after the reset (an order or an activation nobody
        asked for there, its webhooks sent to the next test's core). The kit drops its
        connection, as a restarting server would."""
        resets = self.resets
        await self.clock.hold(seconds, owner=self.name)
        if self.resets != resets:
            raise ResetWhileHeld(f"{self.name} was reset while this request was held")

    def domain_fault(self, *actions: str, entities: dict[str, Any] | None = None,
                     operation: str | None = None, correlation_id: str | None = None) -> FaultRule | None:
        return self.faults.take(actions, operation=operation, entities=entities, correlation_id=correlation_id)

    async def reset(self, *, keep_configuration: bool = False) -> None:
        """Back to how it started; ``keep_configuration``: keep the webhook subscriptions as
        the admin protocol last set them."""
        self.resets += 1
        self.clock.cancel_owned(self.name)
        await self.clock.cancel_tasks(self.name)
        self.journal.clear()
        self.faults.reset()
        self.idempotency.clear()
        self.webhooks.reset(keep_configuration=keep_configuration)
        for hook in self.reset_hooks:
            hook()

    def health(self) -> dict:
        due = self.clock.next_due(self.name)
        return {"service": self.name, "status": "ok", "clock": self.clock.describe(),
                "busy": self.clock.busy_of(self.name), "nextDue": isoformat(due) if due is not None else None,
                "pendingTimers": self.clock.pending(self.name)}


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

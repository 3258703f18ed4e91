"""Signed webhook delivery, at least once, retried on the clock.

Signatures follow the Standard Webhooks spec (``webhook-id``,
``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256>``) using
the ``standardwebhooks`` reference library. The signature timestamp is wall
time: it is transport security, not domain time. Delivery hooks let a
simulator lose, duplicate, delay or reorder a delivery on purpose.

A receiver under pressure is heeded: a 429 or 503 with ``Retry-After`` (seconds or an
HTTP date) puts the next attempt of that delivery at least that far off on the clock,
instead of the schedule's next step when that is sooner.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from standardwebhooks.webhooks import Webhook

from .clock import Clock
from .contract import Contract
from .journal import CORRELATION_HEADER, Journal
from .packed import packed

#: Delay before each attempt, from the first (DESIGN.md).
RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
#: Clock seconds a receiver has to answer one attempt.
ATTEMPT_TIMEOUT = 15.0
#: A reordered delivery waits at most this long for a later one to overtake it.
REORDER_HOLD = 600.0
DEFAULT_SECRET = "whsec_" + "Y2Fhcy1zaW0tZGV2ZWxvcG1lbnQtc2VjcmV0LTAwMDA="  # caas-sim-development-secret-0000


@dataclass(slots=True)
class Subscription:
    event: str  # a webhook name of the contract, or a glob such as "*"
    url: str
    secret: str

    def to_dict(self) -> dict:
        return {"event": self.event, "url": self.url, "secretSet": bool(self.secret)}


@dataclass(slots=True)
class Delivery:
    webhook_id: str
    event: str
    url: str
    secret: str
    body: bytes
    correlation_id: str | None
    entities: dict[str, str] | None
    attempt: int = 0
    copy: int = 0  # >0 for the extra copies of a duplicated delivery
    held: bool = False
    overtaken_by: tuple[str, str] | None = None  # (entity, value) whose next delivery releases a held one


@dataclass(slots=True)
class DeliveryHooks:
    """How one webhook misbehaves on purpose (domain faults map onto these)."""
    lost: bool = False
    redeliver_after: float | None = None  # with lost: the same webhook-id comes back this much later
    duplicates: int = 0
    delay: float = 0.0
    reorder: bool = False
    #: With reorder: only the next delivery about the same entity (say "orderId") overtakes;
    #: without, any next delivery to the same URL does.
    reorder_by: str | None = None
    reorder_hold: float = REORDER_HOLD  # then it leaves anyway: reordered, never lost
    rule_id: str | None = None


class WebhookDispatcher:
    def __init__(self, service: str, clock: Clock, journal: Journal, contract: Contract, *, seed: int,
                 schedule: tuple[float, ...] = RETRY_SCHEDULE, attempt_timeout: float = ATTEMPT_TIMEOUT,
                 unique_ids: bool = False):
        self.service = service
        self.clock = clock
        self.journal = journal
        self.contract = contract
        self.schedule = schedule
        self.attempt_timeout = attempt_timeout
        self.subscriptions: list[Subscription] = []
        #: The subscriptions the service started with, kept when the admin protocol first
        #: changes them: what a reset goes back to.
        self._started_with: list[Subscription] | None = None
        # A webhook-id is the seed's and a count's: a world replayed from its seed sends the
        # same ids (a scenario's report, byte for byte; receivers that order by them).
        # ``unique_ids`` adds something of this dispatcher's own, for a world that talks to a
        # core it did not start afresh: a receiver drops a webhook-id it has seen (Standard
        # Webhooks), and two simulators of one seed (`up` restarted against a core that kept
        # its inbox, a load's own simulator beside `up`'s) sent it the same ids for other messages.
        self._prefix = f"{seed}:{service}:{secrets.token_hex(6)}:" if unique_ids else f"{seed}:{service}:"
        self._ids = itertools.count(1)
        self._held: list[Delivery] = []
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0

    def subscribe(self, event: str, url: str, secret: str = DEFAULT_SECRET) -> Subscription:
        Webhook(secret)  # fail now on a malformed secret, not at first delivery
        sub = Subscription(event, url, secret)
        self.subscriptions = [s for s in self.subscriptions if s.event != event] + [sub]
        return sub

    def replace(self, subscriptions: list[tuple[str, str, str]]) -> None:
        """The admin protocol's change: these (event, url, secret) instead of the current ones."""
        if self._started_with is None:
            self._started_with = list(self.subscriptions)
        self.subscriptions = []
        for event, url, secret in subscriptions:
            self.subscribe(event, url, secret)

    def _new_id(self) -> str:
        digest = hashlib.blake2b(f"{self._prefix}{next(self._ids)}".encode(), digest_size=12)
        return "msg_" + digest.hexdigest()

    def send(self, event: str, payload: dict, *, correlation_id: str | None = None,
             entities: dict[str, str] | None = None, hooks: DeliveryHooks | None = None) -> list[str]:
        """Queue ``payload`` for every subscriber of ``event``; returns the webhook ids."""
        for violation in self.contract.check_webhook(event, payload):
            self.journal.record("violation", "out", event=event, violation=str(violation),
                                correlationId=correlation_id, entities=entities)
        if not self.subscriptions:  # the common case under a load with no receiver: nothing to pack
            return []
        hooks = hooks or DeliveryHooks()
        body = packed(payload)  # kept until delivered
        ids = []
        for sub in self.subscriptions:
            if not fnmatch.fnmatchcase(event, sub.event):
                continue
            delivery = Delivery(self._new_id(), event, sub.url, sub.secret, body, correlation_id, entities)
            ids.append(delivery.webhook_id)
            if hooks.lost:
                self.journal.record("webhook", "out", peer=sub.url, event=event, correlationId=correlation_id,
                                    entities=entities, ruleId=hooks.rule_id,
                                    detail={"webhookId": delivery.webhook_id, "outcome": "lost"})
                if hooks.redeliver_after is not None:
                    self._schedule(delivery, hooks.redeliver_after)
                continue
            if hooks.reorder:
                delivery.held = True
                if hooks.reorder_by and entities and hooks.reorder_by in entities:
                    delivery.overtaken_by = (hooks.reorder_by, entities[hooks.reorder_by])
                self._held.append(delivery)
                self.clock.call_later(hooks.reorder_hold, self._release, delivery, owner=self.service)
                continue
            self._schedule(delivery, hooks.delay)
            for n in range(1, hooks.duplicates + 1):
                copy = Delivery(delivery.webhook_id, event, sub.url, sub.secret, body, correlation_id,
                                entities, copy=n)
                self._schedule(copy, hooks.delay + n)
            # A held (reordered) delivery goes out right after the one that overtakes it.
            for held in [h for h in self._held if h.url == sub.url and _overtakes(entities, h)]:
                self._release(held, after=hooks.delay + 1.0)
        return ids

    def _release(self, delivery: Delivery, after: float = 0.0) -> None:
        if delivery.held:
            delivery.held = False
            self._held.remove(delivery)
            self._schedule(delivery, after)

    def _schedule(self, delivery: Delivery, delay: float) -> None:
        self.clock.call_later(delay, self._start_attempt, delivery, owner=self.service)

    def _start_attempt(self, delivery: Delivery) -> None:
        self.clock.spawn(self._attempt(delivery), self.service)

    async def _attempt(self, delivery: Delivery) -> None:
        delivery.attempt += 1
        timestamp = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": Webhook(delivery.secret).sign(delivery.webhook_id, timestamp, delivery.body.decode()),
        }
        if delivery.correlation_id:
            headers[CORRELATION_HEADER] = delivery.correlation_id
        started = time.perf_counter()
        status: int | None = None
        retry_after: str | None = None
        error: str | None = None
        try:
            # Busy until answered, not parked: receivers in the world answer off the clock, and
            # until one sees the request its bytes are on the way, where a settle cannot see them.
            status, retry_after = await self.clock.wait_for(self._post(delivery.url, delivery.body, headers),
                                                            self.attempt_timeout, park=False)
        except TimeoutError:
            error = f"no answer within {self.attempt_timeout:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 300
        backoff = retry_after_seconds(retry_after, time.time()) if status in (429, 503) else None
        detail = {"webhookId": delivery.webhook_id, "attempt": delivery.attempt, "copy": delivery.copy,
                  "outcome": "delivered" if ok else "failed", "error": error}
        if backoff is not None:
            detail["retryAfter"] = backoff
        self.journal.record(
            "webhook", "out", peer=delivery.url, method="POST", path=_path_of(delivery.url), status=status,
            latencyMs=round((time.perf_counter() - started) * 1000, 3), correlationId=delivery.correlation_id,
            event=delivery.event, entities=delivery.entities, detail=detail,
        )
        if ok:
            self.sent += 1
            return
        if delivery.attempt < len(self.schedule):
            self._schedule(delivery, max(self.schedule[delivery.attempt], backoff or 0.0))
        else:
            self.journal.record("webhook", "out", peer=delivery.url, event=delivery.event,
                                correlationId=delivery.correlation_id, entities=delivery.entities,
                                detail={"webhookId": delivery.webhook_id, "outcome": "exhausted",
                                        "attempts": delivery.attempt})

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str | None]:
        """The receiver's status and its Retry-After header, if any."""
        if self._session is None or self._session.closed:
            # A real-time ceiling too, for receivers that do not share our clock.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        async with self._session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status, resp.headers.get("Retry-After")

    def reset(self, *, keep_configuration: bool = False) -> None:
        self._held.clear()
        if not keep_configuration and self._started_with is not None:
            self.subscriptions, self._started_with = self._started_with, None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def retry_after_seconds(value: str | None, wall_now: float) -> float | None:
    """Seconds a ``Retry-After`` value asks to wait (RFC 9110: delay-seconds or an HTTP date,
    the date read against wall time, as the receiver wrote it); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - wall_now)


def _overtakes(entities: dict[str, str] | None, held: Delivery) -> bool:
    if held.overtaken_by is None:
        return True
    key, value = held.overtaken_by
    return (entities or {}).get(key) == value


def _path_of(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else "/"

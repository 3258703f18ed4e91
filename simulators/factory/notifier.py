"""Status notifications of an order, signed and at least once, misbehaving on purpose when told.

Both webhooks of the factory (``orderStatus`` and ``deliveryStatus``) leave
through here so that one set of fault rules and magic dealerships governs
them: duplicated (same ``webhook-id`` twice), delayed, reordered (held back
until the next notification of the same order has left) and lost-then-
redelivered (the first attempt is lost in transit and journaled as such; the
factory's redelivery sends the same message, same ``webhook-id``, later).

Reordering is done here rather than with the kit's ``DeliveryHooks.reorder``:
the kit releases a held delivery when any other webhook goes to the same URL
or after 10 minutes, while an order's notifications are hours or days apart,
so the hold must be per order and last until that order's next notification.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field

from ..kit.faults import NoParams
from ..kit.service import Service
from ..kit.webhooks import DeliveryHooks
from . import magic as mg


class DuplicatedParams(NoParams):
    copies: int = Field(default=1, ge=1, le=10)


class DelayedParams(NoParams):
    seconds: float = Field(default=3600, ge=0, le=30 * 86400)


#: How long a reordered notification waits at most for the next one of its order: stages last
#: up to three weeks, so anything shorter would release it alone, in order.
REORDER_HOLD = 30 * 86400.0


class ReorderedParams(NoParams):
    hold_seconds: float = Field(default=REORDER_HOLD, gt=0, le=90 * 86400)


class LostParams(NoParams):
    redeliver_after: float = Field(default=6 * 3600, gt=0, le=30 * 86400)


FAULTS = {
    "webhook_duplicated": ("The notification is delivered 1 + `copies` times with the same webhook-id",
                           DuplicatedParams),
    "webhook_delayed": ("The notification leaves `seconds` late", DelayedParams),
    "webhook_reordered": (("The notification is held back and delivered right after the next notification "
                           "of the same order (or after `hold_seconds` if none comes)"), ReorderedParams),
    "webhook_lost": (("The first delivery attempt is lost in transit; the same message (same webhook-id) "
                      "is redelivered `redeliver_after` seconds later"), LostParams),
}


@dataclass(slots=True)
class _Held:
    event: str
    payload: dict
    entities: dict[str, str]
    correlation_id: str | None
    hooks: DeliveryHooks
    lost: bool
    released: bool = False


@dataclass(slots=True)
class _Decision:
    hooks: DeliveryHooks = field(default_factory=DeliveryHooks)
    lost: bool = False  # first attempt lost: hooks.delay is the redelivery delay
    hold: float | None = None  # reordered: hold at most this long


class Notifier:
    def __init__(self, service: Service):
        self.service = service
        self._held: dict[str, list[_Held]] = {}
        for name, (description, params) in FAULTS.items():
            service.faults.register(name, description, params)

    def reset(self) -> None:
        self._held.clear()

    def send(self, event: str, payload: dict, *, order_id: str, entities: dict[str, str],
             correlation_id: str | None, magic: str | None) -> None:
        """Send ``payload`` as webhook ``event``, applying fault rules and the order's magic behaviour."""
        decision = self._decide(event, payload, entities, correlation_id, magic)
        if decision.hold is not None:
            held = _Held(event, payload, entities, correlation_id, decision.hooks, decision.lost)
            self._held.setdefault(order_id, []).append(held)
            self.service.journal.event("webhook.held", entities, sequence=payload["sequence"], event=event)
            self.service.later(decision.hold, self._release, order_id, held, 0.0)
            return
        self._dispatch(event, payload, entities, correlation_id, decision.hooks, decision.lost)
        # Whatever this order had held back leaves right after this one: the receiver sees them swapped.
        for held in self._held.pop(order_id, []):
            self._release(order_id, held, decision.hooks.delay + 1.0)

    def _decide(self, event: str, payload: dict, entities: dict[str, str], correlation_id: str | None,
                magic: str | None) -> _Decision:
        take = lambda action: self.service.domain_fault(action, entities=entities, correlation_id=correlation_id)
        decision = _Decision()
        hooks = decision.hooks
        sequence = payload["sequence"]
        if rule := take("webhook_duplicated"):
            hooks.duplicates, hooks.rule_id = rule.params["copies"], rule.id
        elif magic == "webhooks_duplicated":
            hooks.duplicates = 1
        if rule := take("webhook_delayed"):
            hooks.delay, hooks.rule_id = rule.params["seconds"], rule.id
        elif magic == "webhooks_delayed":
            hooks.delay = mg.WEBHOOK_DELAY_SECONDS
        if rule := take("webhook_lost"):
            decision.lost, hooks.rule_id = True, rule.id
            hooks.delay += rule.params["redeliver_after"]
        elif magic == "webhook_lost" and event == "orderStatus" and sequence == 1:
            decision.lost = True
            hooks.delay += mg.LOST_REDELIVER_AFTER
        if rule := take("webhook_reordered"):
            decision.hold, hooks.rule_id = rule.params["hold_seconds"], rule.id
        elif magic == "webhooks_reordered" and event == "orderStatus" and sequence % 2 == 0:
            decision.hold = REORDER_HOLD
        return decision

    def _release(self, order_id: str, held: _Held, delay: float) -> None:
        if held.released:
            return
        held.released = True
        queue = self._held.get(order_id)
        if queue and held in queue:
            queue.remove(held)
            if not queue:
                del self._held[order_id]
        held.hooks.delay += delay
        self._dispatch(held.event, held.payload, held.entities, held.correlation_id, held.hooks, held.lost)

    def _dispatch(self, event: str, payload: dict, entities: dict[str, str], correlation_id: str | None,
                  hooks: DeliveryHooks, lost: bool) -> None:
        ids = self.service.webhooks.send(event, payload, correlation_id=correlation_id, entities=entities,
                                         hooks=hooks)
        if lost:
            # The kit's own `lost` drops a message for good; at-least-once means the factory
            # redelivers, so the loss is journaled here and the delivery simply leaves later.
            for webhook_id in ids:
                self.service.journal.record("webhook", "out", event=event, correlationId=correlation_id,
                                            entities=entities, ruleId=hooks.rule_id,
                                            detail={"webhookId": webhook_id, "outcome": "lost",
                                                    "redeliveryIn": hooks.delay})

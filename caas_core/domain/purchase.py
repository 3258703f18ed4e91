"""The purchase of an optional service: its delivery state machine.

``transition(state, event)`` returns the next state or raises ``InvalidTransition``.
The state is the **delivery** of the service; money has its own bookkeeping
(``settlement.py``, ``refunds.py``). Settlement events (``SETTLED``,
``SETTLEMENT_FAILED``, ``CHARGEBACK``) are accepted in every state in which a payment
exists and never change the state: CaaS delivers before settlement and assumes the risk,
so a failed settlement or a chargeback opens a collection case and the delivered service
stays active (no retroactive blocking; the base platform is never disabled).

Happy path of a one-time service (TEMPORARY, PERMANENT)::

    REQUESTED -PAYMENT_INITIATED-> PAYMENT_INITIATED -ACTIVATION_REQUESTED-> ACTIVATION_QUEUED
      -ACTIVATION_ATTEMPT_STARTED-> ACTIVATING -ACTIVATED-> ACTIVE [-EXPIRED-> EXPIRED]

A subscription is post-paid (charged at month end), so nothing is charged at purchase:
``BILLING_ARRANGED`` (payment method on file) takes it to ``PAYMENT_INITIATED`` instead.

The payment gateway down (specification: "Defer payment, manual fallback"): the purchase is
accepted unpaid (``PAYMENT_POSTPONED`` -> ``PAYMENT_DEFERRED``) and charged again later;
nothing is activated until it is paid. Still down past the configured limit,
``MANUAL_PAYMENT_REQUIRED`` hands it to manual payment processing (``MANUAL_PAYMENT``, an
operator ticket); a charge that goes through later (the operator's, or the queue's)
continues to ``PAYMENT_INITIATED``.

Retries: a failed attempt (``ACTIVATION_ATTEMPT_FAILED``) or an unavailable IoT API
(``ACTIVATION_DEFERRED``) returns to ``ACTIVATION_QUEUED`` until the next attempt; when
the retry policy gives up, ``ALL_ATTEMPTS_FAILED`` leads to ``ACTIVATION_FAILED`` (support
ticket, full refund pending) and ``REFUND_COMPLETED`` to ``REFUNDED``. Before emitting
``ALL_ATTEMPTS_FAILED`` the flow queries the vehicle: if the service is in fact active
(e.g. a lost callback), it emits ``ACTIVATED`` instead (``support.reconcile``).

``ACTIVATED`` is accepted while queued (the callback of an attempt that timed out on our
side arrives during the backoff) and in ``ACTIVE`` (idempotent). It is refused once the
purchase has been given up, refunded, withdrawn, expired or cancelled: nothing makes such
a purchase active again. A late ``ACTIVATED`` there means the vehicle has the feature on
while the customer was refunded: the flow must send a deactivation
(``needs_deactivation_on_late_activation``).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType


class PurchaseState(StrEnum):
    REQUESTED = "REQUESTED"                  # created; eligibility and payment pending
    REFUSED = "REFUSED"                      # maintenance below threshold or payment declined
    PAYMENT_DEFERRED = "PAYMENT_DEFERRED"    # the gateway was down: accepted unpaid, charged when it is back
    MANUAL_PAYMENT = "MANUAL_PAYMENT"        # the gateway stayed down: handed to manual payment processing
    PAYMENT_INITIATED = "PAYMENT_INITIATED"  # payment accepted (async) or post-paid billing arranged
    ACTIVATION_QUEUED = "ACTIVATION_QUEUED"  # waiting for the next OTA attempt (first, retry, API down)
    ACTIVATING = "ACTIVATING"                # an OTA command is in flight
    ACTIVE = "ACTIVE"                        # delivered
    ACTIVATION_FAILED = "ACTIVATION_FAILED"  # given up: support ticket, full refund pending
    REFUNDED = "REFUNDED"                    # undelivered and refunded in full
    EXPIRED = "EXPIRED"                      # a temporary service reached its expiry
    WITHDRAWN = "WITHDRAWN"                  # right of withdrawal (14 days): deactivated, refunded
    CANCELLED = "CANCELLED"                  # subscription ended (customer, or unpaid after retries)


class PurchaseEvent(StrEnum):
    ELIGIBILITY_REFUSED = "ELIGIBILITY_REFUSED"
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    PAYMENT_INITIATED = "PAYMENT_INITIATED"
    PAYMENT_POSTPONED = "PAYMENT_POSTPONED"
    MANUAL_PAYMENT_REQUIRED = "MANUAL_PAYMENT_REQUIRED"
    BILLING_ARRANGED = "BILLING_ARRANGED"
    ACTIVATION_REQUESTED = "ACTIVATION_REQUESTED"
    ACTIVATION_ATTEMPT_STARTED = "ACTIVATION_ATTEMPT_STARTED"
    ACTIVATED = "ACTIVATED"
    ACTIVATION_ATTEMPT_FAILED = "ACTIVATION_ATTEMPT_FAILED"
    ACTIVATION_DEFERRED = "ACTIVATION_DEFERRED"
    ALL_ATTEMPTS_FAILED = "ALL_ATTEMPTS_FAILED"
    REFUND_COMPLETED = "REFUND_COMPLETED"
    REFUND_FAILED = "REFUND_FAILED"
    EXPIRED = "EXPIRED"
    WITHDRAWN = "WITHDRAWN"
    SUBSCRIPTION_CANCELLED = "SUBSCRIPTION_CANCELLED"
    SETTLED = "SETTLED"
    SETTLEMENT_FAILED = "SETTLEMENT_FAILED"
    CHARGEBACK = "CHARGEBACK"


_S, _E = PurchaseState, PurchaseEvent

#: Events about money that never change the delivery state.
SETTLEMENT_EVENTS: frozenset[PurchaseEvent] = frozenset({_E.SETTLED, _E.SETTLEMENT_FAILED, _E.CHARGEBACK})

#: States in which a payment (or post-paid billing) exists, so settlement events may arrive.
_WITH_PAYMENT: frozenset[PurchaseState] = frozenset(
    set(_S) - {_S.REQUESTED, _S.REFUSED, _S.PAYMENT_DEFERRED, _S.MANUAL_PAYMENT})

#: States of a purchase accepted while its charge has not gone through.
UNPAID: frozenset[PurchaseState] = frozenset({_S.REQUESTED, _S.PAYMENT_DEFERRED, _S.MANUAL_PAYMENT})

_MOVES: dict[PurchaseState, dict[PurchaseEvent, PurchaseState]] = {
    _S.REQUESTED: {
        _E.ELIGIBILITY_REFUSED: _S.REFUSED,
        _E.PAYMENT_DECLINED: _S.REFUSED,
        _E.PAYMENT_INITIATED: _S.PAYMENT_INITIATED,
        _E.BILLING_ARRANGED: _S.PAYMENT_INITIATED,
        _E.PAYMENT_POSTPONED: _S.PAYMENT_DEFERRED,
    },
    _S.REFUSED: {},
    _S.PAYMENT_DEFERRED: {
        _E.PAYMENT_POSTPONED: _S.PAYMENT_DEFERRED,
        _E.PAYMENT_INITIATED: _S.PAYMENT_INITIATED,
        _E.PAYMENT_DECLINED: _S.REFUSED,
        _E.MANUAL_PAYMENT_REQUIRED: _S.MANUAL_PAYMENT,
        _E.WITHDRAWN: _S.WITHDRAWN,
    },
    _S.MANUAL_PAYMENT: {
        _E.PAYMENT_INITIATED: _S.PAYMENT_INITIATED,
        _E.PAYMENT_DECLINED: _S.REFUSED,
        _E.WITHDRAWN: _S.WITHDRAWN,
    },
    _S.PAYMENT_INITIATED: {
        _E.ACTIVATION_REQUESTED: _S.ACTIVATION_QUEUED,
        _E.WITHDRAWN: _S.WITHDRAWN,
    },
    _S.ACTIVATION_QUEUED: {
        _E.ACTIVATION_ATTEMPT_STARTED: _S.ACTIVATING,
        _E.ACTIVATION_DEFERRED: _S.ACTIVATION_QUEUED,
        _E.ACTIVATED: _S.ACTIVE,
        _E.ALL_ATTEMPTS_FAILED: _S.ACTIVATION_FAILED,
        _E.WITHDRAWN: _S.WITHDRAWN,
    },
    _S.ACTIVATING: {
        _E.ACTIVATED: _S.ACTIVE,
        _E.ACTIVATION_ATTEMPT_FAILED: _S.ACTIVATION_QUEUED,
        _E.ACTIVATION_DEFERRED: _S.ACTIVATION_QUEUED,
        _E.ALL_ATTEMPTS_FAILED: _S.ACTIVATION_FAILED,
        _E.WITHDRAWN: _S.WITHDRAWN,
    },
    _S.ACTIVE: {
        _E.ACTIVATED: _S.ACTIVE,
        _E.EXPIRED: _S.EXPIRED,
        _E.WITHDRAWN: _S.WITHDRAWN,
        _E.SUBSCRIPTION_CANCELLED: _S.CANCELLED,
    },
    _S.ACTIVATION_FAILED: {
        _E.REFUND_COMPLETED: _S.REFUNDED,
        _E.REFUND_FAILED: _S.ACTIVATION_FAILED,
    },
    _S.REFUNDED: {
        _E.REFUND_COMPLETED: _S.REFUNDED,
    },
    _S.EXPIRED: {
        _E.EXPIRED: _S.EXPIRED,
    },
    _S.WITHDRAWN: {  # withdrawn once: a second withdrawal is refused (no second refund or notice)
        _E.REFUND_COMPLETED: _S.WITHDRAWN,
        _E.REFUND_FAILED: _S.WITHDRAWN,
    },
    _S.CANCELLED: {
        _E.SUBSCRIPTION_CANCELLED: _S.CANCELLED,
    },
}
for _state in _WITH_PAYMENT:
    for _event in SETTLEMENT_EVENTS:
        _MOVES[_state][_event] = _state

TRANSITIONS: Mapping[PurchaseState, Mapping[PurchaseEvent, PurchaseState]] = MappingProxyType(
    {s: MappingProxyType(m) for s, m in _MOVES.items()}
)

#: States from which nothing more happens to the delivery (money bookkeeping aside).
TERMINAL: frozenset[PurchaseState] = frozenset({_S.REFUSED, _S.REFUNDED, _S.EXPIRED, _S.WITHDRAWN, _S.CANCELLED})

#: States in which a purchase no longer holds its service on the vehicle, nor ever will:
#: refused, given up, refunded, expired, withdrawn or cancelled.
ENDED: frozenset[PurchaseState] = frozenset({_S.REFUSED, _S.ACTIVATION_FAILED, _S.REFUNDED, _S.EXPIRED,
                                             _S.WITHDRAWN, _S.CANCELLED})

#: States in which the service is (being) delivered and the customer owes its price.
_PENDING_DELIVERY: frozenset[PurchaseState] = frozenset({_S.PAYMENT_INITIATED, _S.ACTIVATION_QUEUED, _S.ACTIVATING,
                                                         _S.PAYMENT_DEFERRED, _S.MANUAL_PAYMENT})
_DELIVERED: frozenset[PurchaseState] = frozenset({_S.ACTIVE, _S.EXPIRED, _S.CANCELLED})


class Liability(StrEnum):
    """Whether the customer owes the price, given the delivery state."""
    LIABLE = "LIABLE"            # delivered (or consumed: expired, cancelled subscription)
    PENDING = "PENDING"          # delivery in progress: owed if it succeeds
    NOT_LIABLE = "NOT_LIABLE"    # never delivered, refunded or withdrawn


class InvalidTransition(ValueError):
    def __init__(self, state: PurchaseState, event: PurchaseEvent) -> None:
        self.state = state
        self.event = event
        allowed = ", ".join(sorted(TRANSITIONS[state])) or "none (final)"
        super().__init__(f"event {event.value} is not allowed in state {state.value} (allowed: {allowed})")


def transition(state: PurchaseState | str, event: PurchaseEvent | str) -> PurchaseState:
    """The state after ``event`` in ``state``; ``InvalidTransition`` if not allowed."""
    s, e = PurchaseState(state), PurchaseEvent(event)
    nxt = TRANSITIONS[s].get(e)
    if nxt is None:
        raise InvalidTransition(s, e)
    return nxt


def run(state: PurchaseState | str, events: Iterable[PurchaseEvent | str]) -> PurchaseState:
    """Apply ``events`` in order (raises at the first invalid one)."""
    s = PurchaseState(state)
    for e in events:
        s = transition(s, e)
    return s


def can(state: PurchaseState | str, event: PurchaseEvent | str) -> bool:
    return PurchaseEvent(event) in TRANSITIONS[PurchaseState(state)]


def allowed_events(state: PurchaseState | str) -> frozenset[PurchaseEvent]:
    return frozenset(TRANSITIONS[PurchaseState(state)])


def is_terminal(state: PurchaseState | str) -> bool:
    return PurchaseState(state) in TERMINAL


def is_active(state: PurchaseState | str) -> bool:
    """The service is on in the vehicle (as far as CaaS knows)."""
    return PurchaseState(state) is _S.ACTIVE


def liability(state: PurchaseState | str) -> Liability:
    s = PurchaseState(state)
    if s in _DELIVERED:
        return Liability.LIABLE
    if s in _PENDING_DELIVERY:
        return Liability.PENDING
    return Liability.NOT_LIABLE


def needs_deactivation_on_late_activation(state: PurchaseState | str) -> bool:
    """An ``ACTIVATED`` callback arriving in ``state`` turned on a service the customer no
    longer has (given up and refunded, withdrawn, expired or cancelled): deactivate it."""
    s = PurchaseState(state)
    return s in {_S.ACTIVATION_FAILED, _S.REFUNDED, _S.WITHDRAWN, _S.EXPIRED, _S.CANCELLED}

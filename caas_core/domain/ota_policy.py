"""OTA activation retry policy (specification: "OTA Retry Logic and Failure Handling").

- ``attempts``: vehicle attempts, configurable 3 to 5 (default 4).
- ``backoff``: exponential waits between attempts, default 1, 5, 15, 30 minutes. The wait
  after attempt *n* is ``backoff[n-1]``, capped at the last value; with the default 4
  attempts the waits are 1, 5 and 15 min (the 30 min wait is used with 5 attempts).
- ``attempt_timeout``: 60 s per attempt. When no outcome (callback or poll) is known by
  ``attempt_deadline(started_at)``, the attempt counts as failed with ``TIMEOUT``
  (``AttemptOutcome.no_callback()``).

Classification of what an attempt produced (``classify``):

============================  ===============  ===========  ==========
outcome                       verdict          counts       retry
============================  ===============  ===========  ==========
callback ACTIVATED            ACTIVATED        yes          no
callback FAILED {errorCode}   FAILED           yes          unless terminal code
no outcome within the timeout FAILED (TIMEOUT) yes          yes
HTTP 5xx, 408, 409, 425, 429  API_UNAVAILABLE  no           yes
timeout, connection error,    API_UNAVAILABLE  no           yes
unreadable response
HTTP 4xx (400, 404, 422 ...)  REJECTED         no           no
============================  ===============  ===========  ==========

An unexpected 1xx or 3xx answer is treated as unavailability (retried); a 2xx is not an
outcome (the activation is accepted: wait for the callback) and ``classify`` refuses it.

Terminal error codes (default ``FEATURE_NOT_INSTALLED`` and ``CONFIG_REJECTED``: the
vehicle's firmware lacks the feature or refuses the configuration; sending the same
command again cannot fix it) end the activation at once. 409 is a concurrent duplicate
of the same ``Idempotency-Key`` (the first request is still being processed): retried.
Retrying after a timeout or a connection error is safe only because every attempt of one
activation reuses its ``Idempotency-Key`` (the flow's job).

API-unavailable retries do not consume vehicle attempts (the vehicle was never reached)
and follow the same backoff (honouring ``Retry-After`` when longer), but the whole
activation is capped by ``deadline`` (default 24 h after it was queued): past it, the
next failure of any kind is the final failure. The customer is told once that the
activation is delayed (on the first API-unavailable retry; optionally on the first
vehicle failure too, ``notify_delay_on_vehicle_failure``).

``decide(progress, outcome, now)`` folds one outcome into the activation's progress and
says what to do: ``ACTIVATED`` (notify by email, push and in-vehicle display), ``RETRY``
at ``retry_at``, or ``GIVE_UP`` (then ``support.resolve_final_failure``: query the
vehicle, open a ticket with its diagnostics, refund in full, notify by email and push).

**Deactivation** (the services are reversible feature flags: "Pre-installed Firmware
Model") follows the same policy: ``decide_deactivation`` folds the outcome of one
``POST /ota/deactivate`` (its ``DEACTIVATED``/``FAILED`` callback, no callback within
``attempt_timeout``, an HTTP error) into the deactivation's progress: ``OFF`` (a
``DEACTIVATED`` callback, or 422: the service is not active on the vehicle), ``RETRY`` at
``retry_at`` (same backoff, attempts and API-down deadline as an activation), or
``GIVE_UP`` (then ``support.resolve_final_deactivation_failure``: query the vehicle,
a ticket with its diagnostics unless it reports the service off). No customer notice:
the customer was told when the purchase ended.

**Keeping the core and the vehicle in step.** The vehicle is the ground truth of what
runs on it (``GET /vehicles/{vin}/status``, ``activeServices[].status``), and the last
command it applied wins. ``route_activation_callback`` says what an activation callback
means for a purchase: the outcome of the attempt in flight (or of the last one pushed,
timed out on our side) goes to the retry policy; an ``ACTIVATED`` for an earlier attempt
(a later command went out since) or a ``FAILED`` for a purchase the core holds ``ACTIVE``
contradicts what the core knows, so the vehicle is asked (``reconcile``: ``ACTIVE``
delivers; ``ERROR``, ``PENDING`` or absent leaves the retry policy to retry or give up
and refund; an ``ACTIVE`` purchase the vehicle reports ``ERROR`` or absent is escalated to
support); an ``ACTIVATED`` for a purchase whose feature must be off is switched off again.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import pairwise
from typing import Any

from .notifications import NoticeKind
from .purchase import (
    PurchaseEvent,
    PurchaseState,
    needs_deactivation_on_late_activation,
)

MINUTE = 60.0
HOUR = 3600.0

#: The IoT contract's OtaErrorCode values.
OTA_ERROR_CODES: frozenset[str] = frozenset({
    "VEHICLE_OFFLINE", "TIMEOUT", "ECU_ERROR", "CONFIG_REJECTED", "LOW_BATTERY", "FEATURE_NOT_INSTALLED",
})
DEFAULT_TERMINAL_CODES: frozenset[str] = frozenset({"FEATURE_NOT_INSTALLED", "CONFIG_REJECTED"})

_UNAVAILABLE_STATUSES = frozenset({408, 409, 425, 429})


class OutcomeKind(StrEnum):
    ACTIVATED = "ACTIVATED"              # callback (or poll) says ACTIVATED
    FAILED = "FAILED"                    # callback (or poll) says FAILED with an errorCode
    NO_CALLBACK = "NO_CALLBACK"          # nothing known at the attempt deadline
    HTTP_ERROR = "HTTP_ERROR"            # POST /ota/activate answered a non-2xx status
    TIMEOUT = "TIMEOUT"                  # POST /ota/activate timed out (client side)
    CONNECTION_ERROR = "CONNECTION_ERROR"
    MALFORMED_RESPONSE = "MALFORMED_RESPONSE"
    DEACTIVATED = "DEACTIVATED"          # callback says DEACTIVATED (deactivations only)


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    kind: OutcomeKind
    error_code: str | None = None
    http_status: int | None = None
    retry_after: float | None = None

    @classmethod
    def activated(cls) -> AttemptOutcome:
        return cls(OutcomeKind.ACTIVATED)

    @classmethod
    def failed(cls, error_code: str | None) -> AttemptOutcome:
        return cls(OutcomeKind.FAILED, error_code=error_code or "UNKNOWN")

    @classmethod
    def no_callback(cls) -> AttemptOutcome:
        return cls(OutcomeKind.NO_CALLBACK, error_code="TIMEOUT")

    @classmethod
    def http(cls, status: int, retry_after: float | None = None) -> AttemptOutcome:
        return cls(OutcomeKind.HTTP_ERROR, http_status=status, retry_after=retry_after)

    @classmethod
    def timeout(cls) -> AttemptOutcome:
        return cls(OutcomeKind.TIMEOUT)

    @classmethod
    def connection_error(cls) -> AttemptOutcome:
        return cls(OutcomeKind.CONNECTION_ERROR)

    @classmethod
    def malformed(cls) -> AttemptOutcome:
        return cls(OutcomeKind.MALFORMED_RESPONSE)

    @classmethod
    def deactivated(cls) -> AttemptOutcome:
        return cls(OutcomeKind.DEACTIVATED)


class Verdict(StrEnum):
    ACTIVATED = "ACTIVATED"
    FAILED = "FAILED"
    API_UNAVAILABLE = "API_UNAVAILABLE"
    REJECTED = "REJECTED"
    DEACTIVATED = "DEACTIVATED"


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: Verdict
    counts_as_attempt: bool
    retryable: bool
    error_code: str | None = None
    retry_after: float | None = None


class Step(StrEnum):
    ACTIVATED = "ACTIVATED"
    RETRY = "RETRY"
    GIVE_UP = "GIVE_UP"


@dataclass(frozen=True, slots=True)
class ActivationProgress:
    """What one activation has been through so far (persisted by the flow)."""
    queued_at: float
    vehicle_attempts: int = 0        # attempts that reached the vehicle (or timed out)
    unavailable_retries: int = 0     # consecutive API-unavailable failures since the last attempt
    delay_notified: bool = False
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class OtaDecision:
    step: Step
    progress: ActivationProgress
    classification: Classification
    reason: str
    retry_at: float | None = None
    #: The purchase event to apply; None on GIVE_UP (resolve with support.resolve_final_failure).
    purchase_event: PurchaseEvent | None = None
    notices: tuple[NoticeKind, ...] = ()

    @property
    def notify_delayed(self) -> bool:
        return NoticeKind.ACTIVATION_DELAYED in self.notices


class DeactivationStep(StrEnum):
    OFF = "OFF"            # the feature is off on the vehicle
    RETRY = "RETRY"
    GIVE_UP = "GIVE_UP"    # then support.resolve_final_deactivation_failure


class DeactivationStatus(StrEnum):
    """Where a purchase's feature stands on the vehicle once it must be off (persisted)."""
    PENDING = "PENDING"          # a deactivation is under way, its next push queued (retried per the policy)
    IN_FLIGHT = "IN_FLIGHT"      # a deactivation command is awaiting its outcome (callback or timeout)
    OFF = "OFF"                  # confirmed off: DEACTIVATED, 422 not active, or the vehicle's status
    NOT_NEEDED = "NOT_NEEDED"    # nothing of the activation ever reached the vehicle
    FAILED = "FAILED"            # every attempt failed and the vehicle may still run it: support ticket
    KEPT = "KEPT"                # left on: another live purchase of the vehicle holds the feature


#: A deactivation under way (a job of it is queued).
DEACTIVATING: frozenset[str] = frozenset({DeactivationStatus.PENDING.value, DeactivationStatus.IN_FLIGHT.value})


@dataclass(frozen=True, slots=True)
class DeactivationDecision:
    step: DeactivationStep
    progress: ActivationProgress
    reason: str
    retry_at: float | None = None


#: ``POST /ota/deactivate`` answers 422 when the service is not active on the vehicle: already off.
NOT_ACTIVE_STATUS = 422


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff: tuple[float, ...] = (1 * MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE)
    attempt_timeout: float = 60.0
    deadline: float = 24 * HOUR
    terminal_error_codes: frozenset[str] = field(default=DEFAULT_TERMINAL_CODES)
    notify_delay_on_vehicle_failure: bool = False

    def __post_init__(self) -> None:
        if type(self.attempts) is not int or not 3 <= self.attempts <= 5:
            raise ValueError(f"attempts must be an integer from 3 to 5, got {self.attempts!r}")
        backoff = tuple(self.backoff)
        if not backoff:
            raise ValueError("backoff needs at least one delay")
        for d in backoff:
            if isinstance(d, bool) or not isinstance(d, (int, float)) or not d > 0:
                raise ValueError(f"backoff delays must be positive seconds, got {d!r}")
        if any(b < a for a, b in pairwise(backoff)):
            raise ValueError(f"backoff must not decrease, got {backoff}")
        if isinstance(self.attempt_timeout, bool) or not self.attempt_timeout > 0:
            raise ValueError("attempt_timeout must be positive")
        if isinstance(self.deadline, bool) or not self.deadline >= self.attempt_timeout:
            raise ValueError("deadline must be at least attempt_timeout")
        object.__setattr__(self, "backoff", tuple(float(d) for d in backoff))
        object.__setattr__(self, "terminal_error_codes", frozenset(self.terminal_error_codes))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryPolicy:
        """From settings, e.g. ``{"attempts": 5, "backoff": [60, 300, 900, 1800]}``."""
        known = {"attempts", "backoff", "attempt_timeout", "deadline", "terminal_error_codes",
                 "notify_delay_on_vehicle_failure"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown retry policy settings: {sorted(unknown)}")
        kwargs = dict(data)
        if "backoff" in kwargs:
            kwargs["backoff"] = tuple(kwargs["backoff"])
        if "terminal_error_codes" in kwargs:
            kwargs["terminal_error_codes"] = frozenset(kwargs["terminal_error_codes"])
        return cls(**kwargs)

    # schedule --------------------------------------------------------------------------
    def delay_after(self, attempt_number: int) -> float:
        """The wait after the ``attempt_number``-th failure (1-based), capped at the last delay."""
        if type(attempt_number) is not int or attempt_number < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt_number!r}")
        return self.backoff[min(attempt_number, len(self.backoff)) - 1]

    def next_attempt_at(self, attempt_number: int, failed_at: float) -> float | None:
        """When to make the next attempt after attempt ``attempt_number`` failed at
        ``failed_at``; None when it was the last."""
        delay = self.delay_after(attempt_number)
        if attempt_number >= self.attempts:
            return None
        return failed_at + delay

    def schedule(self) -> tuple[float, ...]:
        """The waits between the attempts (``attempts - 1`` of them)."""
        return tuple(self.delay_after(n) for n in range(1, self.attempts))

    def attempt_deadline(self, started_at: float) -> float:
        """When an attempt started at ``started_at`` counts as failed (TIMEOUT) if no outcome is known."""
        return started_at + self.attempt_timeout

    def give_up_at(self, queued_at: float) -> float:
        return queued_at + self.deadline

    # classification --------------------------------------------------------------------
    def classify(self, outcome: AttemptOutcome) -> Classification:
        k = outcome.kind
        if k is OutcomeKind.ACTIVATED:
            return Classification(Verdict.ACTIVATED, counts_as_attempt=True, retryable=False)
        if k is OutcomeKind.DEACTIVATED:
            return Classification(Verdict.DEACTIVATED, counts_as_attempt=True, retryable=False)
        if k in (OutcomeKind.FAILED, OutcomeKind.NO_CALLBACK):
            code = outcome.error_code or "TIMEOUT"
            return Classification(Verdict.FAILED, counts_as_attempt=True,
                                   retryable=code not in self.terminal_error_codes, error_code=code)
        if k is OutcomeKind.HTTP_ERROR:
            status = outcome.http_status
            if type(status) is not int or not 100 <= status <= 599 or 200 <= status < 300:
                raise ValueError(f"not an error status: {status!r} (a 2xx answer waits for the callback)")
            if status >= 500 or status in _UNAVAILABLE_STATUSES or status < 400:
                return Classification(Verdict.API_UNAVAILABLE, counts_as_attempt=False, retryable=True,
                                      error_code=f"IOT_HTTP_{status}", retry_after=outcome.retry_after)
            return Classification(Verdict.REJECTED, counts_as_attempt=False, retryable=False,
                                  error_code=f"IOT_HTTP_{status}")
        code = {OutcomeKind.TIMEOUT: "IOT_TIMEOUT", OutcomeKind.CONNECTION_ERROR: "IOT_CONNECTION_ERROR",
                OutcomeKind.MALFORMED_RESPONSE: "IOT_MALFORMED_RESPONSE"}[k]
        return Classification(Verdict.API_UNAVAILABLE, counts_as_attempt=False, retryable=True,
                              error_code=code, retry_after=outcome.retry_after)

    # decision --------------------------------------------------------------------------
    def decide(self, progress: ActivationProgress, outcome: AttemptOutcome, now: float) -> OtaDecision:
        c = self.classify(outcome)
        if c.verdict is Verdict.DEACTIVATED:
            raise ValueError("DEACTIVATED is the outcome of a deactivation (decide_deactivation)")
        deadline = self.give_up_at(progress.queued_at)

        if c.verdict is Verdict.ACTIVATED:
            p = replace(progress, vehicle_attempts=progress.vehicle_attempts + 1, unavailable_retries=0,
                        last_error=None)
            return OtaDecision(Step.ACTIVATED, p, c, "activated", purchase_event=PurchaseEvent.ACTIVATED,
                               notices=(NoticeKind.SERVICE_ACTIVATED,))

        if c.verdict is Verdict.REJECTED:
            p = replace(progress, last_error=c.error_code)
            return OtaDecision(Step.GIVE_UP, p, c, f"the IoT API rejected the activation ({c.error_code})")

        if c.verdict is Verdict.FAILED:
            p = replace(progress, vehicle_attempts=progress.vehicle_attempts + 1, unavailable_retries=0,
                        last_error=c.error_code)
            if not c.retryable:
                return OtaDecision(Step.GIVE_UP, p, c, f"{c.error_code} cannot be fixed by retrying")
            nxt = self.next_attempt_at(p.vehicle_attempts, now)
            if nxt is None:
                return OtaDecision(Step.GIVE_UP, p, c,
                                   f"all {self.attempts} attempts failed (last: {c.error_code})")
            if now >= deadline:
                return OtaDecision(Step.GIVE_UP, p, c, f"activation deadline passed (last: {c.error_code})")
            notices: tuple[NoticeKind, ...] = ()
            if self.notify_delay_on_vehicle_failure and not p.delay_notified:
                p = replace(p, delay_notified=True)
                notices = (NoticeKind.ACTIVATION_DELAYED,)
            return OtaDecision(Step.RETRY, p, c,
                               f"attempt {p.vehicle_attempts} of {self.attempts} failed ({c.error_code})",
                               retry_at=min(nxt, deadline),
                               purchase_event=PurchaseEvent.ACTIVATION_ATTEMPT_FAILED, notices=notices)

        # API unavailable: the vehicle was not reached, no attempt consumed.
        p = replace(progress, unavailable_retries=progress.unavailable_retries + 1, last_error=c.error_code)
        if now >= deadline:
            return OtaDecision(Step.GIVE_UP, p, c,
                               f"the IoT API was still unavailable at the activation deadline ({c.error_code})")
        delay = self.delay_after(p.unavailable_retries)
        if c.retry_after is not None and c.retry_after > delay:
            delay = float(c.retry_after)
        notices = ()
        if not p.delay_notified:
            p = replace(p, delay_notified=True)
            notices = (NoticeKind.ACTIVATION_DELAYED,)
        return OtaDecision(Step.RETRY, p, c, f"the IoT API is unavailable ({c.error_code}); activation queued",
                           retry_at=min(now + delay, deadline),
                           purchase_event=PurchaseEvent.ACTIVATION_DEFERRED, notices=notices)

    def decide_deactivation(self, progress: ActivationProgress, outcome: AttemptOutcome,
                            now: float) -> DeactivationDecision:
        """Fold one outcome of a deactivation into its progress (``queued_at``: when it was
        asked for; ``delay_notified`` is not used): off, retry when, or give up."""
        if outcome.kind is OutcomeKind.ACTIVATED:
            raise ValueError("ACTIVATED is the outcome of an activation (decide)")
        if outcome.kind is OutcomeKind.DEACTIVATED:
            p = replace(progress, vehicle_attempts=progress.vehicle_attempts + 1, unavailable_retries=0,
                        last_error=None)
            return DeactivationDecision(DeactivationStep.OFF, p, "deactivated")
        if outcome.kind is OutcomeKind.HTTP_ERROR and outcome.http_status == NOT_ACTIVE_STATUS:
            return DeactivationDecision(DeactivationStep.OFF, replace(progress, last_error=None),
                                        "the service is not active on the vehicle")
        c = self.classify(outcome)
        deadline = self.give_up_at(progress.queued_at)
        if c.verdict is Verdict.REJECTED:
            return DeactivationDecision(DeactivationStep.GIVE_UP, replace(progress, last_error=c.error_code),
                                        f"the IoT API rejected the deactivation ({c.error_code})")
        if c.verdict is Verdict.FAILED:
            p = replace(progress, vehicle_attempts=progress.vehicle_attempts + 1, unavailable_retries=0,
                        last_error=c.error_code)
            if not c.retryable:
                return DeactivationDecision(DeactivationStep.GIVE_UP, p,
                                            f"{c.error_code} cannot be fixed by retrying")
            nxt = self.next_attempt_at(p.vehicle_attempts, now)
            if nxt is None:
                return DeactivationDecision(DeactivationStep.GIVE_UP, p,
                                            f"all {self.attempts} deactivation attempts failed (last: {c.error_code})")
            if now >= deadline:
                return DeactivationDecision(DeactivationStep.GIVE_UP, p,
                                            f"deactivation deadline passed (last: {c.error_code})")
            return DeactivationDecision(
                DeactivationStep.RETRY, p,
                f"deactivation attempt {p.vehicle_attempts} of {self.attempts} failed ({c.error_code})",
                retry_at=min(nxt, deadline))
        # API unavailable: the vehicle was not reached, no attempt consumed.
        p = replace(progress, unavailable_retries=progress.unavailable_retries + 1, last_error=c.error_code)
        if now >= deadline:
            return DeactivationDecision(
                DeactivationStep.GIVE_UP, p,
                f"the IoT API was still unavailable at the deactivation deadline ({c.error_code})")
        delay = self.delay_after(p.unavailable_retries)
        if c.retry_after is not None and c.retry_after > delay:
            delay = float(c.retry_after)
        return DeactivationDecision(DeactivationStep.RETRY, p,
                                    f"the IoT API is unavailable ({c.error_code}); deactivation queued",
                                    retry_at=min(now + delay, deadline))


# --- keeping the core and the vehicle in step ---------------------------------------------

_S = PurchaseState
#: An activation is being delivered (an attempt in flight, or the next one queued).
IN_PROGRESS: frozenset[PurchaseState] = frozenset({_S.ACTIVATION_QUEUED, _S.ACTIVATING})


class CallbackAction(StrEnum):
    DECIDE = "DECIDE"          # the outcome of the attempt in flight (or the last pushed): the policy decides
    RECONCILE = "RECONCILE"    # contradicts what the core knows: ask the vehicle, act on what it reports
    DEACTIVATE = "DEACTIVATE"  # switched on while the purchase's feature must be off: switch it off
    IGNORE = "IGNORE"          # already counted, superseded, or agrees with what the core knows


def route_activation_callback(state: PurchaseState | str, activated: bool, *, latest: bool, in_flight: bool,
                              deactivation_pending: bool = False) -> CallbackAction:
    """What an activation's ``ACTIVATED`` (``activated``) or ``FAILED`` callback means for its
    purchase in ``state``. ``latest``: it is about the last command pushed for the purchase
    (the vehicle applies the last command it gets, so only that one says what is on it);
    ``in_flight``: and that attempt is still awaited (``ACTIVATING``).

    - ACTIVATED while delivering: the last command's success delivers (even after our
      timeout); an earlier command's does not tell what the later one did: reconcile.
    - FAILED while delivering: only the attempt in flight counts (a timed-out attempt was
      counted already; the retry policy goes on).
    - FAILED for a purchase held ACTIVE: the two disagree: reconcile.
    - ACTIVATED once the feature must be off (given up, refunded, withdrawn, expired,
      cancelled): deactivate, unless a deactivation is already under way.
    """
    s = PurchaseState(state)
    if activated:
        if s in IN_PROGRESS:
            return CallbackAction.DECIDE if latest else CallbackAction.RECONCILE
        if needs_deactivation_on_late_activation(s):
            return CallbackAction.IGNORE if deactivation_pending else CallbackAction.DEACTIVATE
        return CallbackAction.IGNORE
    if s in IN_PROGRESS:
        return CallbackAction.DECIDE if in_flight else CallbackAction.IGNORE
    if s is _S.ACTIVE:
        return CallbackAction.RECONCILE
    return CallbackAction.IGNORE


class ReconcileAction(StrEnum):
    DELIVER = "DELIVER"    # being delivered and the vehicle runs it: the purchase is ACTIVE
    WAIT = "WAIT"          # being delivered and not (yet) on the vehicle: the retry policy retries or gives up
    IN_STEP = "IN_STEP"    # the core and the vehicle agree: nothing to do
    ESCALATE = "ESCALATE"  # ACTIVE for the customer, ERROR or absent on the vehicle: support ticket


#: What the vehicle reports for one service: ``activeServices[].status``, or ABSENT when not listed.
VEHICLE_ACTIVE, VEHICLE_PENDING, VEHICLE_ERROR, VEHICLE_ABSENT = "ACTIVE", "PENDING", "ERROR", "ABSENT"
#: A service the vehicle does not run.
VEHICLE_NOT_RUNNING: frozenset[str] = frozenset({VEHICLE_ERROR, VEHICLE_ABSENT})


def reconcile(state: PurchaseState | str, on_vehicle: str) -> ReconcileAction:
    """Act on what the vehicle reports (``on_vehicle``: ACTIVE | PENDING | ERROR | ABSENT) for a
    purchase in ``state`` whose callbacks conflicted: the vehicle is the ground truth."""
    s = PurchaseState(state)
    if s in IN_PROGRESS:
        return ReconcileAction.DELIVER if on_vehicle == VEHICLE_ACTIVE else ReconcileAction.WAIT
    if s is _S.ACTIVE and on_vehicle in VEHICLE_NOT_RUNNING:
        return ReconcileAction.ESCALATE
    return ReconcileAction.IN_STEP


def switch_off_on_withdrawal(state: PurchaseState | str, *, attempts: int, unavailable_retries: int) -> bool:
    """Whether a withdrawal in ``state`` must send a deactivation: the service is (being)
    delivered, or an earlier attempt went out and may have been applied after our timeout.
    A purchase withdrawn before any command went out has nothing on the vehicle (a command
    on its way as it is withdrawn is switched off by the activation flow)."""
    s = PurchaseState(state)
    if s in (_S.ACTIVE, _S.ACTIVATING):
        return True
    return s is _S.ACTIVATION_QUEUED and (attempts > 0 or unavailable_retries > 0)

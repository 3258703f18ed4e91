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
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import pairwise
from typing import Any

from .notifications import NoticeKind
from .purchase import PurchaseEvent

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


class Verdict(StrEnum):
    ACTIVATED = "ACTIVATED"
    FAILED = "FAILED"
    API_UNAVAILABLE = "API_UNAVAILABLE"
    REJECTED = "REJECTED"


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

"""Pydantic models of the admin protocol (``contracts/admin.yaml``), and of the core's audit.

What ``Admin`` and ``AsyncAdmin`` (``caas_sim.simulators.typed_client``) answer with and accept. Field
names are snake_case in Python and the contract's camelCase on the wire (``next_due`` is
``nextDue``; a rule window's ``from`` is ``from_``); instants are timezone-aware
``datetime``. A model built from a dict takes either spelling.

The contract stays the source of truth: ``SCHEMAS`` names the schema each model mirrors,
and ``tests/test_admin_models.py`` checks every model against it (the same fields, the
same required ones, compatible types and enumerations), so neither can drift.

Answers ignore fields they do not know (a newer service may add some); requests forbid
them, so that a misspelt field fails here rather than as a 400 from the service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

JournalKind = Literal["request", "response", "webhook", "event", "fault", "violation"]
Direction = Literal["in", "out", "internal"]
ClockMode = Literal["real", "virtual", "scaled"]


class _Answer(BaseModel):
    """A body a service sends: unknown fields are ignored."""
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True, extra="ignore", frozen=True)


class _Request(BaseModel):
    """A body sent to a service: unknown fields are an error."""
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True, extra="forbid")

    def to_json(self) -> dict[str, Any]:
        """The JSON body: camelCase, without the fields left unset."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- errors -----------------------------------------------------------------
class Violation(_Answer):
    """One failed constraint of a request that broke the contract."""
    location: Literal["body", "path", "query", "header"]
    pointer: str
    message: str


class Problem(_Answer):
    """An RFC 9457 problem detail: every error answer of the protocol."""
    model_config = ConfigDict(extra="allow")  # problems carry fields of their own kind
    type: str
    title: str
    status: int = Field(ge=100, le=599)
    detail: str | None = None
    instance: str | None = None
    violations: list[Violation] | None = None
    rule_id: str | None = None


# --- health and clock -------------------------------------------------------
class ClockState(_Answer):
    """A service's clock (the contract's ``Clock``)."""
    now: AwareDatetime
    epoch: float
    mode: ClockMode
    scale: float = Field(gt=0)


class Health(_Answer):
    service: str = Field(min_length=1)
    status: Literal["ok"]
    clock: ClockState
    #: Handlers, jobs and deliveries running now (not parked on the clock).
    busy: int = Field(ge=0)
    #: The earliest pending timer; None when none is pending.
    next_due: AwareDatetime | None
    pending_timers: int = Field(ge=0)


class ClockMove(_Request):
    """Exactly one of ``advance`` (``"15m"``, or seconds) and ``to``; ``fire=False`` (admin
    protocol 1.1) moves the clock without firing what falls due on the way."""
    advance: str | float | None = None
    to: datetime | None = None
    fire: bool | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ClockMove:
        if (self.advance is None) == (self.to is None):
            raise ValueError("a clock move takes exactly one of `advance` and `to`")
        return self


class ResetOptions(_Request):
    keep_configuration: bool = False


class ResetResult(_Answer):
    reset: Literal[True]
    service: str = Field(min_length=1)


class Removed(_Answer):
    removed: int = Field(ge=0)


# --- faults -----------------------------------------------------------------
class FaultMatch(_Request):
    """What a rule applies to; every criterion given must match (globs allowed)."""
    method: str | None = None
    path: str | None = None
    operation: str | None = None
    #: Entity selectors (vin, orderId, country, cardToken...) to glob patterns.
    selectors: dict[str, str] | None = None


class FaultAction(_Request):
    """``latency`` {ms, jitter_ms}, ``http_error`` {status, retry_after, phase}, ``timeout``
    {seconds, phase}, ``reset`` {phase}, ``malformed_body``; or a domain fault of the service
    (``vehicle_offline``, ``settlement_failed`` {reason}...: ``faults().actions`` lists them)."""
    type: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    params: dict[str, Any] | None = None


class FaultWindow(_Request):
    """When a new rule is live: date-times, or offsets from now such as ``+1h``."""
    from_: str | AwareDatetime | None = Field(default=None, alias="from")
    until: str | AwareDatetime | None = None


class FaultRuleInput(_Request):
    """A rule to add (``POST /__admin/faults``)."""
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    description: str | None = None
    match: FaultMatch | None = None
    action: FaultAction
    #: Apply to the first N matches only.
    times: int | None = Field(default=None, ge=1)
    #: Apply to a match with this probability (seeded).
    probability: float | None = Field(default=None, gt=0, le=1)
    window: FaultWindow | None = None


class RuleWindow(_Answer):
    """A rule's window as the service holds it: bounds resolved to instants."""
    from_: AwareDatetime | None = Field(default=None, alias="from")
    until: AwareDatetime | None = None


class FaultRule(_Answer):
    """A rule in force."""
    id: str
    description: str | None = None
    match: FaultMatch | None = None
    action: FaultAction
    times: int | None = None
    probability: float | None = None
    window: RuleWindow | None = None
    #: How many times it has applied.
    hits: int = Field(ge=0)
    #: Applications left, or None when unlimited.
    remaining: int | None
    created_at: AwareDatetime


class FaultRules(_Answer):
    """The rules a ``POST /__admin/faults`` added (the contract's ``FaultRuleList``)."""
    rules: list[FaultRule]


class FaultActionSpec(_Answer):
    name: str
    kind: Literal["transport", "domain"]
    description: str
    #: The JSON schema of the action's params.
    params: dict[str, Any]


class FaultList(_Answer):
    """``GET /__admin/faults``: the rules in evaluation order and the actions the service knows."""
    rules: list[FaultRule]
    actions: list[FaultActionSpec]


# --- journal ----------------------------------------------------------------
class JournalEntry(_Answer):
    seq: int = Field(ge=1)
    #: Virtual (clock) time.
    vt: AwareDatetime
    wall: AwareDatetime
    service: str
    kind: JournalKind
    direction: Direction
    peer: str | None = None
    method: str | None = None
    path: str | None = None
    operation: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    correlation_id: str | None = None
    #: The fault rule applied.
    rule_id: str | None = None
    #: The contract violation (``violation`` entries).
    violation: str | None = None
    #: The domain event (``event`` entries).
    event: str | None = None
    entities: dict[str, str] | None = None
    detail: dict[str, Any] | None = None


class JournalPage(_Answer):
    entries: list[JournalEntry]
    #: The ``since`` of the next read.
    next: int = Field(ge=0)
    #: Entries after ``since`` evicted from the ring buffer before they could be read.
    dropped: int = Field(ge=0)


# --- webhooks ---------------------------------------------------------------
class SubscriptionInput(_Request):
    #: A webhook name of the service's contract (``otaStatus``...), or ``*``.
    event: str = Field(pattern=r"^(\*|[A-Za-z][A-Za-z0-9_.-]{0,127})$")
    url: str = Field(pattern=r"^https?://", max_length=2048)
    #: Its Standard Webhooks signing secret (``whsec_...``).
    secret: str = Field(pattern=r"^whsec_[A-Za-z0-9+/=]+$", max_length=256)


class SubscriptionsInput(_Request):
    subscriptions: list[SubscriptionInput] = Field(max_length=64)


class Subscription(_Answer):
    event: str
    url: str
    #: Whether deliveries are signed (the secret itself is never returned).
    secret_set: bool


class Subscriptions(_Answer):
    """The contract's ``SubscriptionList``."""
    subscriptions: list[Subscription]


# --- the core's audit (contracts/core.yaml) ---------------------------------
class AuditViolation(_Answer):
    invariant: str = Field(min_length=1)
    #: The ids of the entities concerned (purchaseId, paymentId, webhookId...).
    entities: dict[str, str]
    detail: str


class AuditReport(_Answer):
    """``GET /__admin/audit`` of a core: ``ok`` when no invariant is violated; ``settled``
    when nothing was in flight (settle first, then audit)."""
    ok: bool
    settled: bool
    invariants: list[str]
    checked: dict[str, int]
    in_flight: dict[str, int]
    violations: list[AuditViolation]


#: The schema each model mirrors: ``<contract>#<JSON pointer>``. The drift test walks it.
SCHEMAS: dict[type[BaseModel], str] = {
    Violation: "admin.yaml#/components/schemas/Violation",
    Problem: "admin.yaml#/components/schemas/Problem",
    ClockState: "admin.yaml#/components/schemas/Clock",
    Health: "admin.yaml#/components/schemas/Health",
    ClockMove: "admin.yaml#/components/schemas/ClockMove",
    ResetOptions: "admin.yaml#/components/schemas/ResetOptions",
    ResetResult: "admin.yaml#/components/schemas/ResetResult",
    Removed: "admin.yaml#/components/schemas/Removed",
    FaultMatch: "admin.yaml#/components/schemas/FaultMatch",
    FaultAction: "admin.yaml#/components/schemas/FaultAction",
    FaultWindow: "admin.yaml#/components/schemas/FaultRuleInput/properties/window",
    FaultRuleInput: "admin.yaml#/components/schemas/FaultRuleInput",
    RuleWindow: "admin.yaml#/components/schemas/FaultRule/properties/window",
    FaultRule: "admin.yaml#/components/schemas/FaultRule",
    FaultRules: "admin.yaml#/components/schemas/FaultRuleList",
    FaultActionSpec: "admin.yaml#/components/schemas/FaultActionSpec",
    FaultList: "admin.yaml#/components/schemas/FaultList",
    JournalEntry: "admin.yaml#/components/schemas/JournalEntry",
    JournalPage: "admin.yaml#/components/schemas/JournalPage",
    SubscriptionInput: "admin.yaml#/components/schemas/SubscriptionInput",
    SubscriptionsInput: "admin.yaml#/components/schemas/SubscriptionsInput",
    Subscription: "admin.yaml#/components/schemas/Subscription",
    Subscriptions: "admin.yaml#/components/schemas/SubscriptionList",
    AuditViolation: "core.yaml#/components/schemas/AuditReport/properties/violations/items",
    AuditReport: "core.yaml#/components/schemas/AuditReport",
}

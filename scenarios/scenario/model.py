"""The scenario format: a world, steps on a virtual clock, and expectations.

A scenario reads as a journey of the specification: who acts (the actors and
their roles), what they do (calls to the core, time passing, faults injected
into the external systems, workshop visits), and what must hold at the end.
These pydantic models are the format; ``scenario.schema.json`` is generated
from them for editors (``python -m caas_sim.scenarios.scenario.schema``).

Strings may hold ``${name}``: a value saved by an earlier step, a magic VIN
(``${vins.iot.healthy}``, ``${vins.vss.several_blocks_low}``), ``${seed}`` or
``${i}`` inside ``repeat``. A string that is exactly one ``${...}`` keeps the
value's type (a number stays a number).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from caas_sim import catalogue
from caas_sim.simulators.kit.durations import parse_duration

#: What a core key may be: the roles of contracts/core.yaml.
Role = Literal["customer", "dealership", "operator"]
#: Where a call goes: the core (default) or a simulator by its stack name.
SIMULATORS = list(catalogue.NAMES)
#: A simulator by its stack name (the service catalogue's).
Simulator = Literal[catalogue.NAMES]  # type: ignore[valid-type]  # built from the catalogue's table
Target = Literal[("core", *catalogue.NAMES)]  # type: ignore[valid-type]



def _is_template(value: Any) -> bool:
    """A ``${...}`` value is known only at run time: checked then, not here."""
    return isinstance(value, str) and "${" in value


def _checked_duration(value: str | float) -> str | float:
    if not _is_template(value):
        parse_duration(value)  # its ValueError says what is wrong, and pydantic reports it with the line
    return value


#: A duration: ``90s``, ``15m``, ``1h30m``, ``3d``, or seconds; never negative.
Duration = Annotated[str | int | float, AfterValidator(_checked_duration), Field(examples=["30s", "15m", "3d"])]
#: An expected HTTP status.
HttpStatus = Annotated[int, Field(ge=100, le=599)]


def _checked_statuses(value: int | list[int]) -> int | list[int]:
    # One message for one or several (a union of constrained types names each branch's error).
    for status in [value] if isinstance(value, int) else value:
        if not 100 <= status <= 599:
            raise ValueError(f"{status} is not an HTTP status (100-599)")
    return value


#: One expected HTTP status or several.
Statuses = Annotated[int | list[int], AfterValidator(_checked_statuses),
                     WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 100, "maximum": 599},
                                               {"type": "array", "items": {"type": "integer", "minimum": 100,
                                                                           "maximum": 599}}]})]
#: How many of something were seen.
Count = Annotated[int, Field(ge=0)]
#: The methods a `call` may use.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Actor(_Strict):
    role: Role
    subject: str = Field(default="ops", description="the customer or dealership id the key acts for")
    key: str | None = Field(default=None, description="API key; default `<role>-<subject>` (in-process worlds "
                                                      "create it; a --target core must know it)")

    def api_key(self) -> str:
        return self.key or f"{self.role}-{self.subject}"


class FaultRule(BaseModel):
    """A fault rule as contracts/admin.yaml defines it (match, action, times/probability/window)."""
    model_config = ConfigDict(extra="allow")
    action: dict[str, Any]
    id: str | None = None
    match: dict[str, Any] | None = None
    times: int | None = None
    probability: float | None = None
    window: dict[str, str] | None = None


class World(_Strict):
    seed: int = Field(default=0, description="seed of every RNG and fleet; `--seed` overrides it")
    clock: Literal["virtual"] = "virtual"
    services: list[Simulator] = Field(default_factory=lambda: ["iot", "vss", "payments"])
    actors: dict[str, Actor] = Field(default_factory=dict)
    faults: dict[str, list[FaultRule]] = Field(default_factory=dict,
                                               description="rules loaded into a simulator before the first step")
    profiles: dict[str, list[str]] = Field(default_factory=dict,
                                           description="fault profile files (relative to the scenario) per simulator")
    core: dict[str, Any] = Field(default_factory=dict,
                                 description="core settings overrides (CoreSettings fields, e.g. "
                                             "{ota: {attempts: 3}}); in-process only")
    options: dict[str, dict[str, Any]] = Field(default_factory=dict, description="simulator options per service")
    from_start: bool = Field(default=False, description="the journey needs the world as it starts (the calendar from "
                             "5 January 2026, VSS maintenance as the fleet has it then): a --target world whose "
                             "clock has moved on skips it")


# --- steps ---------------------------------------------------------------------

class Call(_Strict):
    call: str = Field(description="`METHOD /path`, e.g. `POST /customers/c-1/vehicles/${vins.iot.healthy}/purchases`",
                      json_schema_extra={"pattern": rf"^({'|'.join(METHODS)}) \S"})
    as_: str | None = Field(default=None, alias="as", description="the actor whose key is sent (core calls)")
    service: Target = Field(default="core", description="where the call goes: the core or a simulator")
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    status: Statuses | None = Field(default=None, description="expected status(es); default: any 2xx")
    expect: dict[str, Any] | None = Field(default=None, description="a match on the response body")
    save: dict[str, str] = Field(default_factory=dict,
                                 description="variable -> dotted path in the response body (`purchaseId`)")
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("call")
    @classmethod
    def _method_and_path(cls, call: str) -> str:
        method, _, path = call.partition(" ")
        if _is_template(method):
            return call
        if method.upper() not in METHODS:
            raise ValueError(f"{method!r} is not an HTTP method: `METHOD /path`, METHOD one of {', '.join(METHODS)}")
        if not path.strip():
            raise ValueError("a call is `METHOD /path`: the path is missing")
        return call


class Advance(_Strict):
    advance: Duration = Field(description="let virtual time pass, event by event")


class Check(_Strict):
    """A condition on the state an API answers: GET ``get`` (as ``as`` on ``service``) and match."""
    get: str
    as_: str | None = Field(default=None, alias="as")
    service: Target = Field(default="core", description="where the call goes: the core or a simulator")
    status: HttpStatus = 200
    match: dict[str, Any] | list[Any] | None = None
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Until(_Strict):
    until: Check
    within: Duration = Field(description="virtual-time limit; the step fails past it")


class Assert(_Strict):
    assert_: Check = Field(alias="assert", description="a condition that must hold now, mid-journey")
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FaultStep(_Strict):
    fault: Literal["add", "remove", "clear"]
    service: Simulator
    rule: FaultRule | None = None
    rules: list[FaultRule] | None = None
    profile: str | None = Field(default=None, description="a fault profile file, relative to the scenario")
    id: str | None = Field(default=None, description="the rule to remove")

    @model_validator(mode="after")
    def _what_it_needs(self) -> FaultStep:
        if self.fault == "remove" and not self.id:
            raise ValueError("fault remove needs the rule's id (id: ...)")
        if self.fault == "add" and not (self.rule or self.rules or self.profile):
            raise ValueError("fault add needs rule, rules or profile")
        return self


class WorkshopRecord(_Strict):
    vin: str
    workshopId: str = "OFF-ES-MAD01"
    block: str
    serviceType: str
    performedAt: str | None = Field(default=None, description="default: the current virtual time")
    mileageKm: int | None = None
    notes: str | None = None


class Workshop(_Strict):
    workshop: WorkshopRecord = Field(description="a workshop records a service in VSS (contracts/vss-workshop.yaml)")


class Repeat(_Strict):
    repeat: int = Field(ge=1, le=1000, description="run `steps` this many times, with ${i} = 0, 1, ...")
    steps: list[Step]


class Note(_Strict):
    note: str = Field(description="a line for the report, nothing else")


def _step_kind(value: Any) -> str | None:
    return _kind(value, ("call", "advance", "until", "assert", "fault", "workshop", "repeat", "note"))


def _kind(value: Any, keys: tuple[str, ...]) -> str | None:
    if isinstance(value, BaseModel):  # its tag is its first field
        return next(iter(type(value).model_fields)).rstrip("_")
    if isinstance(value, dict):
        for key in keys:
            if key in value:
                return key
    return None


Step = Annotated[
    Annotated[Call, Tag("call")] | Annotated[Advance, Tag("advance")] | Annotated[Until, Tag("until")]
    | Annotated[Assert, Tag("assert")] | Annotated[FaultStep, Tag("fault")] | Annotated[Workshop, Tag("workshop")]
    | Annotated[Repeat, Tag("repeat")] | Annotated[Note, Tag("note")],
    Discriminator(_step_kind, custom_error_type="unknown_step",
                  custom_error_message="a step is one of call, advance, until, assert, fault, workshop, repeat, note"),
]


# --- expectations --------------------------------------------------------------

class StateExpectation(_Strict):
    state: Check = Field(description="an API's answer matches (final states, payments on the gateway...)")


class NotificationsExpectation(_Strict):
    class Spec(_Strict):
        customer: str
        as_: str = Field(alias="as")
        template: str
        channels: list[Literal["email", "push", "in_vehicle"]] | None = Field(
            default=None, description="exactly these channels were used for the template")
        count: Count | None = Field(default=None, description="notices of this template, all channels")
        model_config = ConfigDict(extra="forbid", populate_by_name=True)

    notifications: Spec


class TicketsExpectation(_Strict):
    class Spec(_Strict):
        as_: str = Field(alias="as")
        count: Count | None = None
        match: dict[str, Any] | None = Field(default=None, description="every ticket matches")
        model_config = ConfigDict(extra="forbid", populate_by_name=True)

    tickets: Spec


class JournalExpectation(_Strict):
    class Spec(_Strict):
        service: str
        kind: Literal["request", "webhook", "event", "fault", "violation"] | None = None
        operation: str | None = None
        path: str | None = None
        event: str | None = None
        status: HttpStatus | None = None
        entity: dict[str, str] | None = Field(default=None, description="entries naming this entity (vin: ...)")
        count: Count | None = None
        min: Count | None = None
        max: Count | None = None

    journal: Spec


class SequenceExpectation(_Strict):
    class Spec(_Strict):
        entity: dict[str, str] | None = Field(default=None, description="one entity of the merged journal: "
                                              "{vin: ...}, {paymentId: ...}, {orderId: ...}")
        get: str | None = Field(default=None, description="or a list an API answers, e.g. a sale's file "
                                                          "(`/sales/${sale}/file`)")
        as_: str | None = Field(default=None, alias="as")
        items: str | None = Field(default=None, description="with get: the dotted path of the list (`history`)")
        where: dict[str, Any] | None = Field(default=None, description="with get: only the items that match")
        label: str | None = Field(default=None, description="with get: each item's label, `{dotted.field}` "
                                                            "replaced (`{detail.outcome}`)")
        events: list[str] = Field(description="labels in order, e.g. `iot: activateService 202`, "
                                              "`iot: ota.failed`, `iot -> core: otaStatus 204`")
        exactly: bool = Field(default=False, description="the whole sequence, not a subsequence")
        model_config = ConfigDict(extra="forbid", populate_by_name=True)

        @model_validator(mode="after")
        def _one_source(self) -> SequenceExpectation.Spec:
            if (self.entity is None) == (self.get is None):
                raise ValueError("a sequence reads either a journal entity (entity) or an API list (get, items, label)")
            if self.get is not None and (self.items is None or self.label is None):
                raise ValueError("a sequence read with get needs items and label")
            return self

    sequence: Spec


class CollectionExpectation(_Strict):
    class Spec(_Strict):
        count: Count
        status: str | None = None

    collection_cases: Spec = Field(description="the core's collection cases, read from its database: in-process "
                                               "worlds only (against --target it is reported as not checked)")


class AuditExpectation(_Strict):
    class Spec(_Strict):
        ok: bool = Field(default=True, description="every invariant of the audit holds")
        settled: bool | None = Field(default=True, description="nothing is in flight any more")
        peers: bool = Field(default=False, description="judge from the simulators' side (the payment gateway's "
                                                       "and the IoT fleet's journals and state), needing nothing "
                                                       "from the core, instead of the core's own audit")

    audit: Spec = Field(description="the core's invariant audit (GET /__admin/audit): nothing lost, nothing done "
                                    "twice, no one charged for what was not delivered, owed money in collection; "
                                    "or, with `peers`, the same promises checked from the simulators' side")


class ViolationsExpectation(_Strict):
    violations: int = Field(description="contract violations journaled anywhere (always 0 unless stated)")


def _expect_kind(value: Any) -> str | None:
    return _kind(value, ("state", "notifications", "tickets", "journal", "sequence", "collection_cases",
                         "audit", "violations"))


Expectation = Annotated[
    Annotated[StateExpectation, Tag("state")] | Annotated[NotificationsExpectation, Tag("notifications")]
    | Annotated[TicketsExpectation, Tag("tickets")] | Annotated[JournalExpectation, Tag("journal")]
    | Annotated[SequenceExpectation, Tag("sequence")] | Annotated[CollectionExpectation, Tag("collection_cases")]
    | Annotated[AuditExpectation, Tag("audit")] | Annotated[ViolationsExpectation, Tag("violations")],
    Discriminator(_expect_kind, custom_error_type="unknown_expectation",
                  custom_error_message="an expectation is one of state, notifications, tickets, journal, "
                                       "sequence, collection_cases, audit, violations"),
]


class Scenario(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="what the scenario proves, in kebab case")
    proves: str = Field(description="the business rule or failure path, in a sentence")
    spec: str | None = Field(default=None, description="the specification's section")
    tags: list[str] = Field(default_factory=list)
    known_issue: str | None = Field(default=None, description="a known defect of the core this scenario shows: "
                                    "its failure is expected (XFAIL); once it passes (XPASS) the run fails "
                                    "until this line is removed")
    world: World = Field(default_factory=World)
    steps: list[Step]
    expect: list[Expectation] = Field(default_factory=list)
    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _actors_exist(self) -> Scenario:
        unknown = [InitErrorDetails(type=PydanticCustomError(
                       "unknown_actor", "no actor {actor} in world.actors ({known})",
                       {"actor": repr(actor), "known": ", ".join(self.world.actors) or "none"}), loc=loc, input=actor)
                   for loc, actor in actors_named(self) if actor not in self.world.actors and not _is_template(actor)]
        if unknown:  # every one of them, each at its own place in the file
            raise ValidationError.from_exception_data(type(self).__name__, unknown)
        return self


def actors_named(scenario: Scenario) -> list[tuple[tuple[str | int, ...], str]]:
    """Every actor an ``as:`` names, with its location in the scenario."""
    named = list(_actors_in_steps(scenario.steps, ("steps",)))
    for n, e in enumerate(scenario.expect):
        kind = _expect_kind(e)
        spec = getattr(e, kind)
        if isinstance(spec, BaseModel) and getattr(spec, "as_", None) is not None:
            named.append((("expect", n, kind, "as"), spec.as_))
    return named


def _actors_in_steps(steps: list[Any], at: tuple[str | int, ...]):
    for n, step in enumerate(steps):
        if isinstance(step, Call) and step.as_ is not None:
            yield (*at, n, "as"), step.as_
        elif isinstance(step, Until) and step.until.as_ is not None:
            yield (*at, n, "until", "as"), step.until.as_
        elif isinstance(step, Assert) and step.assert_.as_ is not None:
            yield (*at, n, "assert", "as"), step.assert_.as_
        elif isinstance(step, Repeat):
            yield from _actors_in_steps(step.steps, (*at, n, "steps"))


Repeat.model_rebuild()

"""National vehicle registration: the model the four registries share.

A registration carries the specification's common data (vehicle, owner,
purchase, insurance) and the country's documents. It moves through the
specification's status model on the service's clock::

    REGISTRATION_INITIATED -> UNDER_REVIEW -> APPROVED -> PLATE_ASSIGNED
                              UNDER_REVIEW -> ADDITIONAL_INFO_REQUIRED -> UNDER_REVIEW
                              UNDER_REVIEW -> REJECTED

(PENDING_PAYMENT, PAYMENT_RECEIVED, READY_FOR_DELIVERY, RESOLVE_ISSUE and
REFUND_PROCESS are the platform's states, not the registry's: a rejected
registration is retried by submitting a new one.)

Countries differ in data, validation, integration method and timing, given by
a ``Country``; the machinery here is the same for all:

- SYNCHRONOUS (Spain, France): the answer to the submission carries the
  authority's decision: APPROVED with the plate number (as DGT's and SIV's
  online registration give it at once), ADDITIONAL_INFO_REQUIRED with the
  fields asked for, or REJECTED with a reason. The registration certificate
  is issued, and the status becomes PLATE_ASSIGNED, after the processing time.
- SEMI_AUTOMATED (Germany): the submission is accepted; a clerk decides after
  the processing time; the caller polls ``GET /registrations/{id}``.
- ASYNCHRONOUS (United Kingdom): accepted like Germany, and every later status
  change is sent as a signed webhook.

Processing times are business days counted from the local date of
submission (weekends and the country's public holidays skipped), drawn from
the country's range deterministically from the seed and the VIN; the decision
lands at a seeded minute within office hours of the last of them. Scheduled
maintenance windows, the ``registry_unavailable`` fault and a magic tax id
answer 503 with the manual-submission fallback.

Options (``SimConfig.options``; the country's value when absent):
``processing_days`` [low, high] business days; ``office_hours`` ["09:00",
"17:00"]; ``timezone``; ``holidays`` (ISO dates replacing the national
calendar, [] for none); ``maintenance`` ([{weekday, from, until}], [] for
none); ``enforce_vin_check_digit`` (false); ``slow_extra_days`` (10, for the
slow magic tax id); ``plate_start`` (Spain, France: where the national series
continues); ``e_plates`` (Germany: the E suffix of electric vehicles, true).

LIMITATIONS (shared by the four registries; each module adds its own):
- Only first registrations of new vehicles by a resident owner: no transfers,
  deregistration, imports, temporary or trade plates, personalised marks.
- The authority's checks against other registers (stolen vehicles, unpaid
  fines or taxes, identity) are not modelled: they happen only through magic
  tax ids and fault rules.
- No deadline for additional information (a real authority closes an
  incomplete application, e.g. after 10 business days in Spain under Ley
  39/2015 art. 68); the registration waits for it indefinitely.
- The VIN check digit (position 9) is not enforced by default: ISO 3779 makes
  it optional and only North America mandates it (49 CFR 565), so none of the
  four authorities rejects a VIN for it (European makers often put a filler
  such as Z there); ``enforce_vin_check_digit: true`` turns the check on.
- Public holidays are the national ones (regional holidays are ignored),
  office hours are the same on every business day, and the maintenance
  windows are illustrative (real ones are announced case by case).
- The owner must reside in the registry's country (address country fixed by
  the contract); the registration's currency is not checked.
- Documents are references (ids of files held elsewhere), never inspected.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any, Literal

from pydantic import Field, create_model

from ..iot.fleet import has_valid_check_digit, vin_check_digit
from ..kit.clock import isoformat
from ..kit.delivery_faults import delivery_hooks, register_delivery_faults
from ..kit.errors import ProblemError
from ..kit.faults import NoParams
from ..kit.service import Service
from .business_days import Calendar
from .plates import PlateRequest, PlateUnavailable
from .vocabulary import (
    _METRIC_HP_PER_KW,
    APPROVED,
    CALLBACK_FAULTS,
    INFO_REQUIRED,
    INITIATED,
    MAGIC_INFO_FIELDS,
    PLATE_ASSIGNED,
    REJECTED,
    REJECTION_CODES,
    STATUS_EVENT,
    TRANSITIONS,
    UNDER_REVIEW,
    VALUE_FIELDS,
    Country,
    Method,
    window,
)

# ------------------------------------------------------------------- the record


@dataclass(slots=True)
class Registration:
    id: str
    request: dict           # the submission, updated by additional info
    correlation_id: str | None
    created: float
    updated: float = 0.0
    status: str | None = None
    history: list[dict] = field(default_factory=list)
    round: int = 0          # review rounds started; stale timers compare it
    info_rounds: int = 0    # additional-info requests answered
    processing_days: int | None = None
    estimated: date | None = None
    required_info: dict | None = None
    rejection: dict | None = None
    plate: str | None = None
    registration_date: date | None = None
    document: dict | None = None

    @property
    def vin(self) -> str:
        return self.request["vehicle"]["vin"]

    @property
    def tax_id(self) -> str:
        return self.request["owner"]["taxId"]

    def entities(self) -> dict[str, str]:
        out = {"registrationId": self.id, "vin": self.vin, "taxId": self.tax_id,
               "dealership": self.request["purchase"]["dealership"]}
        if self.request.get("reference"):
            out["reference"] = self.request["reference"]
        return out


@dataclass(frozen=True, slots=True)
class Plan:
    """When a review (or, synchronously, the certificate) completes."""
    business_days: int  # as published
    estimated: date     # the day it is due, as published
    due: float          # when it really happens (injected delays included)


# ------------------------------------------------------------------ fault params


class ReasonParams(NoParams):
    code: Literal[REJECTION_CODES] = "OTHER"  # type: ignore[valid-type]
    reason: str = Field(default="Registration denied by the authority", min_length=1, max_length=500)


class OutageParams(NoParams):
    retry_after: int = Field(default=3600, ge=0, le=7 * 86400)


class InvalidDataParams(NoParams):
    field: str = Field(default="owner.taxId", min_length=1, max_length=64)
    message: str = Field(default="rejected by the authority's validation", min_length=1, max_length=500)


class DelayParams(NoParams):
    business_days: int = Field(default=5, ge=1, le=60)



def _info_params(country: Country) -> type[NoParams]:
    fields = tuple(VALUE_FIELDS) + tuple(f"documents.{t}" for t in country.document_types)
    return create_model(  # the fields a country can ask for, checked when the rule is posted
        f"InfoParams{country.code}", __base__=NoParams,
        fields=(list[Literal[fields]],  # type: ignore[valid-type]
                Field(default=list(MAGIC_INFO_FIELDS), min_length=1)),
    )


# ----------------------------------------------------------------------- model


def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


class Registry:
    """The state and rules of one national registry."""

    def __init__(self, service: Service, country: Country, options: dict | None = None):
        options = dict(options or {})
        self.service = service
        self.country = country
        self.seed = service.seed
        lo, hi = options.get("processing_days", country.processing_days)
        if not 1 <= int(lo) <= int(hi) <= 60:
            raise ValueError(f"processing_days {lo}..{hi}: want 1 <= low <= high <= 60 business days")
        self.processing_days = (int(lo), int(hi))
        opens, closes = options.get("office_hours", ("09:00", "17:00"))
        holidays = country.holidays
        if options.get("holidays") is not None:
            fixed = frozenset(date.fromisoformat(d) for d in options["holidays"])

            def holidays(year: int) -> frozenset[date]:
                return fixed
        self.calendar = Calendar(options.get("timezone", country.timezone), holidays,
                                 time.fromisoformat(opens), time.fromisoformat(closes))
        raw_windows = options.get("maintenance")
        self.maintenance = country.maintenance if raw_windows is None else tuple(
            window(w["weekday"], w["from"], w["until"]) for w in raw_windows)
        self.enforce_check_digit = bool(options.get("enforce_vin_check_digit", False))
        self.slow_extra_days = int(options.get("slow_extra_days", 10))
        self.plates = country.plates(self.seed, options)
        self.registrations: dict[str, Registration] = {}
        self._latest_by_vin: dict[str, Registration] = {}  # one live registration per VIN
        self._ids = itertools.count(1)
        self._documents = itertools.count(1)
        self._register_faults()
        service.reset_hooks.append(self.reset)

    def _register_faults(self) -> None:
        register = self.service.faults.register
        register("registration_rejected", "The authority rejects the registration with code and reason",
                 ReasonParams)
        register("additional_info_required", "The authority asks for more information (fields)",
                 _info_params(self.country))
        register("registry_unavailable", "The registry answers 503: submit manually (retry_after seconds)",
                 OutageParams)
        register("invalid_data", "The submission fails validation on field with message (422)", InvalidDataParams)
        register("processing_delay", "Processing takes business_days more than published", DelayParams)
        if self.country.method is Method.ASYNCHRONOUS:
            register_delivery_faults(self.service.faults, CALLBACK_FAULTS, "The status callback")

    def reset(self) -> None:
        self.registrations.clear()
        self._latest_by_vin.clear()
        self.plates.reset()
        self._ids = itertools.count(1)
        self._documents = itertools.count(1)

    # --- reads ---------------------------------------------------------
    def get(self, registration_id: str) -> dict:
        reg = self.registrations.get(registration_id)
        self._check_available("getRegistration", reg.entities() if reg else {"registrationId": registration_id})
        return self.view(self._lookup(registration_id))

    def _lookup(self, registration_id: str) -> Registration:
        reg = self.registrations.get(registration_id)
        if reg is None:
            raise ProblemError(404, "Unknown registration", f"no registration {registration_id} at the "
                               f"{self.country.authority}", kind="unknown-registration")
        return reg

    def availability(self) -> dict:
        now = self.service.clock.now()
        down = self._maintenance_until(now)
        outage = self.service.faults.peek("registry_unavailable", entities={})
        status, reason, until = "AVAILABLE", None, None
        if down is not None:
            status, reason, until = "UNAVAILABLE", "MAINTENANCE", isoformat(down)
        elif outage is not None:
            status, reason = "UNAVAILABLE", "OUTAGE"
            until = isoformat(now + outage.params["retry_after"])
        upcoming = self._next_maintenance(now)
        return {"status": status, "reason": reason, "availableAgainAt": until,
                "integrationMethod": self.country.method.value,
                "timeZone": self.calendar.tz.key,
                "maintenanceWindows": [w.to_dict() for w in self.maintenance],
                "nextMaintenance": None if upcoming is None else
                {"from": isoformat(upcoming[0]), "until": isoformat(upcoming[1])},
                "manualSubmission": dict(self.country.manual_submission)}

    # --- commands ------------------------------------------------------
    def create(self, body: dict, correlation_id: str | None = None) -> dict:
        owner, vehicle = body["owner"], body["vehicle"]
        entities = {"vin": vehicle["vin"], "taxId": owner["taxId"], "dealership": body["purchase"]["dealership"]}
        if body.get("reference"):
            entities["reference"] = body["reference"]
        self._check_available("createRegistration", entities,
                              magic=self.country.magic_tax_ids.get(owner["taxId"]) == "unavailable")
        now = self.service.clock.now()
        sync = self.country.method is Method.SYNCHRONOUS
        # Asynchronously, the registration date is the end of the review, as published.
        registration_day = self.calendar.local(now).date() if sync else \
            self._plan(vehicle["vin"], owner["taxId"], 1, now).estimated
        self._validate(body, registration_day, entities, correlation_id)
        other = self._latest_by_vin.get(vehicle["vin"])
        if other is not None and other.status != REJECTED:
            raise ProblemError(409, "Vehicle already registered" if other.status == PLATE_ASSIGNED
                               else "Registration in progress",
                               f"{vehicle['vin']} has registration {other.id} ({other.status}); a new one can "
                               "be submitted only after a rejection", kind="registration-exists",
                               registrationId=other.id, registrationStatus=other.status)
        digest = hashlib.blake2b(f"{self.seed}:{self.country.code}:registration:{next(self._ids)}".encode(),
                                 digest_size=8).hexdigest()
        reg = Registration(f"reg_{self.country.code.lower()}_{digest}", _copy(body), correlation_id, now)
        self.registrations[reg.id] = self._latest_by_vin[reg.vin] = reg
        self._move(reg, INITIATED, notify=False)
        if sync:
            self._move(reg, UNDER_REVIEW, notify=False)
            reg.round = 1
            self._decide(reg, notify=False)
        else:
            self._start_review(reg, self._plan(reg.vin, reg.tax_id, 1, now, reg.entities()), now)
        return self.view(reg)

    def provide_info(self, registration_id: str, body: dict, correlation_id: str | None = None) -> dict:
        found = self.registrations.get(registration_id)
        self._check_available("provideAdditionalInfo",
                              found.entities() if found else {"registrationId": registration_id})
        reg = self._lookup(registration_id)
        if reg.status != INFO_REQUIRED:
            raise ProblemError(409, "Not awaiting additional information",
                               f"registration {reg.id} is {reg.status}; information is accepted only while it is "
                               f"{INFO_REQUIRED}", kind="not-awaiting-info", registrationStatus=reg.status)
        errors = self._check_info(reg, body)
        if rule := self.service.domain_fault("invalid_data", entities=reg.entities(), operation="provideAdditionalInfo",
                                             correlation_id=correlation_id):
            errors.append((rule.params["field"], rule.params["message"]))
        if errors:
            raise _invalid(errors)
        documents = {d["type"]: d for d in reg.request.get("documents", [])}
        documents.update({d["type"]: d for d in body.get("documents", [])})
        reg.request["documents"] = list(documents.values())
        _apply_values(reg.request, body.get("values", {}))
        reg.info_rounds += 1
        reg.required_info = None
        self._move(reg, UNDER_REVIEW, notify=False)
        now = self.service.clock.now()
        if self.country.method is Method.SYNCHRONOUS:
            reg.round += 1
            self._decide(reg, notify=False)
        else:
            self._start_review(reg, self._plan(reg.vin, reg.tax_id, reg.round + 1, now, reg.entities()), now)
        return self.view(reg)

    # --- availability --------------------------------------------------
    def _maintenance_until(self, ts: float) -> float | None:
        """When the maintenance under way at ``ts`` ends (adjacent windows run on), else None."""
        end = None
        for _ in range(len(self.maintenance) + 1):
            local = self.calendar.local(ts if end is None else end)
            for w in self.maintenance:
                if local.weekday() == w.weekday and w.start <= local.time() \
                        and (w.until == time(0) or local.time() < w.until):
                    end_day = local.date() + timedelta(days=1) if w.until == time(0) else local.date()
                    end = self.calendar.at(end_day, w.until)
                    break
            else:
                return end
        return end

    def _next_maintenance(self, ts: float) -> tuple[float, float] | None:
        """The maintenance under way or next to come (adjacent windows merged), if any."""
        today = self.calendar.local(ts).date()
        spans = []
        for offset in range(-1, 8):
            day = today + timedelta(days=offset)
            for w in self.maintenance:
                if day.weekday() == w.weekday:
                    begin = self.calendar.at(day, w.start)
                    end = self._maintenance_until(begin)
                    if end is not None and end > ts:
                        spans.append((begin, end))
        return min(spans) if spans else None

    def _check_available(self, operation: str, entities: dict, *, magic: bool = False) -> None:
        now = self.service.clock.now()
        until = self._maintenance_until(now)
        if until is not None:
            raise self._unavailable("MAINTENANCE", until - now, f"scheduled maintenance until {isoformat(until)}")
        rule = self.service.domain_fault("registry_unavailable", entities=entities, operation=operation)
        if rule is not None:
            raise self._unavailable("OUTAGE", rule.params["retry_after"], f"outage (fault rule {rule.id})",
                                    ruleId=rule.id)
        if magic:
            raise self._unavailable("OUTAGE", 3600, "outage (magic tax id)")

    def _unavailable(self, reason: str, retry_after: float, why: str, **extra: Any) -> ProblemError:
        retry = max(1, math.ceil(retry_after))
        return ProblemError(503, "Registry unavailable",
                            f"the {self.country.authority} is unavailable: {why}; retry later or submit manually",
                            kind="registry-unavailable", headers={"Retry-After": str(retry)}, reason=reason,
                            fallback="MANUAL_SUBMISSION", availableAgainAt=isoformat(self.service.clock.now() + retry),
                            manualSubmission=dict(self.country.manual_submission), **extra)

    # --- validation ----------------------------------------------------
    def _validate(self, body: dict, registration_day: date, entities: dict, correlation_id: str | None) -> None:
        """Everything the schema cannot say; all errors at once (422)."""
        today = self.calendar.local(self.service.clock.now()).date()
        vehicle, owner, purchase, insurance = body["vehicle"], body["owner"], body["purchase"], body["insurance"]
        errors: list[tuple[str, str]] = []
        if self.enforce_check_digit and not has_valid_check_digit(vehicle["vin"]):
            errors.append(("vehicle.vin", f"check digit (position 9) should be {vin_check_digit(vehicle['vin'])}"))
        if vehicle["year"] > today.year + 1:
            errors.append(("vehicle.year", f"model year {vehicle['year']} is after {today.year + 1}"))
        electric = vehicle["engineType"] == "ELECTRIC"
        if electric and vehicle["emissions"] != 0:
            errors.append(("vehicle.emissions", "an ELECTRIC vehicle emits 0 g/km of CO2"))
        elif not electric and vehicle["emissions"] == 0:
            errors.append(("vehicle.emissions", f"a {vehicle['engineType']} vehicle cannot emit 0 g/km of CO2"))
        kw, hp = vehicle["power"]["kw"], vehicle["power"]["hp"]
        expected_hp = kw * _METRIC_HP_PER_KW
        if abs(hp - expected_hp) > max(2.0, 0.03 * expected_hp):  # 3% admits imperial bhp (1.341 per kW)
            errors.append(("vehicle.power.hp", f"{hp} hp does not match {kw} kW (about {round(expected_hp)} hp)"))
        if owner["type"] == "INDIVIDUAL" and date.fromisoformat(owner["dateOfBirth"]) >= today:
            errors.append(("owner.dateOfBirth", "the date of birth is not in the past"))
        if (problem := self.country.check_tax_id(owner["type"], owner["taxId"])) is not None:
            errors.append(("owner.taxId", problem))
        if date.fromisoformat(purchase["date"]) > today:
            errors.append(("purchase.date", f"the purchase date is after today ({today})"))
        if date.fromisoformat(insurance["validFrom"]) > registration_day:
            errors.append(("insurance.validFrom", (f"the insurance must be in force on the registration date "
                                                  f"({registration_day})")))
        types = [d["type"] for d in body.get("documents", [])]
        for duplicated in sorted({t for t in types if types.count(t) > 1}):
            errors.append(("documents", f"{duplicated} is given more than once"))
        errors.extend(self.country.check_owner(body))
        try:
            self.plates.check(_plate_request(body, registration_day))
        except PlateUnavailable as exc:
            errors.append(("owner.address.postalCode", str(exc)))
        if rule := self.service.domain_fault("invalid_data", entities=entities, operation="createRegistration",
                                             correlation_id=correlation_id):
            errors.append((rule.params["field"], rule.params["message"]))
        if errors:
            raise _invalid(errors)

    def _check_info(self, reg: Registration, body: dict) -> list[tuple[str, str]]:
        errors: list[tuple[str, str]] = []
        given = {f"documents.{d['type']}" for d in body.get("documents", [])} | set(body.get("values", {}))
        for name in reg.required_info["fields"] if reg.required_info else []:
            if name["field"] not in given:
                errors.append((name["field"], "asked for and not supplied"))
        types = [d["type"] for d in body.get("documents", [])]
        for duplicated in sorted({t for t in types if types.count(t) > 1}):
            errors.append(("documents", f"{duplicated} is given more than once"))
        today = self.calendar.local(self.service.clock.now()).date()
        values = body.get("values", {})
        updated = _apply_values(_copy(reg.request), values)  # values are checked against each other too
        for name, value in values.items():
            if name == "owner.dateOfBirth" and date.fromisoformat(value) >= today:
                errors.append((name, "the date of birth is not in the past"))
            elif (problem := self.country.check_value(name, value, updated)) is not None:
                errors.append((name, problem))
        return errors

    # --- the review ----------------------------------------------------
    def _plan(self, vin: str, tax_id: str, round_: int, start: float, entities: dict | None = None) -> Plan:
        """The published plan; with ``entities``, the real one (slow magic and delay faults applied)."""
        lo, hi = self.processing_days
        days = lo + _digest(self.seed, self.country.code, vin, round_, "days") % (hi - lo + 1)
        extra = 0
        if entities is not None:
            extra = self.slow_extra_days if self.country.magic_tax_ids.get(tax_id) == "slow" else 0
            if rule := self.service.domain_fault("processing_delay", entities=entities):
                extra += rule.params["business_days"]
        day = self.calendar.local(start).date()
        minute = self.calendar.office_minute(_digest(self.seed, self.country.code, vin, round_, "minute"))
        estimated = self.calendar.add_business_days(day, days)
        actual = self.calendar.add_business_days(day, days + extra)
        return Plan(days, estimated, self.calendar.at(actual, minute))

    def _start_review(self, reg: Registration, plan: Plan, now: float) -> None:
        reg.round += 1
        reg.processing_days, reg.estimated = plan.business_days, plan.estimated
        if reg.status == INITIATED:
            opening = self.calendar.next_opening(now)
            if opening <= now:
                self._move(reg, UNDER_REVIEW, notify=False)
            else:  # submitted out of office hours: the file waits for the next opening
                self.service.at(opening, self._begin_review, reg.id, reg.round)
        self.service.at(plan.due, self._review_done, reg.id, reg.round)

    def _begin_review(self, registration_id: str, round_: int) -> None:
        reg = self.registrations.get(registration_id)
        if reg is not None and reg.round == round_ and reg.status == INITIATED:
            self._move(reg, UNDER_REVIEW)

    def _review_done(self, registration_id: str, round_: int) -> None:
        reg = self.registrations.get(registration_id)
        if reg is None or reg.round != round_:
            return  # reset, or superseded
        if reg.status == INITIATED:  # the opening and the decision fell on the same instant
            self._move(reg, UNDER_REVIEW)
        if reg.status == UNDER_REVIEW:
            self._decide(reg)

    def _decide(self, reg: Registration, notify: bool = True) -> None:
        entities = reg.entities()
        take = lambda action: self.service.domain_fault(action, entities=entities, correlation_id=reg.correlation_id)
        magic = self.country.magic_tax_ids.get(reg.tax_id)
        if rule := take("registration_rejected"):
            return self._reject(reg, rule.params["code"], rule.params["reason"], notify)
        if rule := take("additional_info_required"):
            return self._require(reg, rule.params["fields"], notify)
        if magic == "rejected":
            return self._reject(reg, *self.country.magic_rejection, notify)
        present = {d["type"] for d in reg.request.get("documents", [])}
        missing = [f"documents.{t}" for t in self.country.required_documents if t not in present]
        if missing:
            return self._require(reg, missing, notify)
        if magic == "additional_info" and reg.info_rounds == 0:
            return self._require(reg, list(MAGIC_INFO_FIELDS), notify)
        self._approve(reg, notify)

    def _reject(self, reg: Registration, code: str, reason: str, notify: bool) -> None:
        reg.rejection = {"code": code, "reason": reason}
        self._move(reg, REJECTED, notify=notify, reason=reason)

    def _require(self, reg: Registration, fields: list[str], notify: bool) -> None:
        reg.required_info = {"fields": [{"field": f, "description": _describe(f)} for f in dict.fromkeys(fields)],
                             "requestedAt": isoformat(self.service.clock.now())}
        self._move(reg, INFO_REQUIRED, notify=notify)

    def _approve(self, reg: Registration, notify: bool) -> None:
        now = self.service.clock.now()
        today = self.calendar.local(now).date()
        try:
            plate = self.plates.issue(_plate_request(reg.request, today))
        except PlateUnavailable as exc:  # a series ran out: the authority cannot register now
            return self._reject(reg, "OTHER", str(exc), notify)
        reg.plate, reg.registration_date = plate, today
        self._move(reg, APPROVED, notify=notify)
        if self.country.method is Method.SYNCHRONOUS:
            # The certificate (and with it the plate) is issued after the processing time.
            plan = self._plan(reg.vin, reg.tax_id, reg.round, now, reg.entities())
            reg.processing_days, reg.estimated = plan.business_days, plan.estimated
            self.service.at(plan.due, self._issue_certificate, reg.id, reg.round)
        else:
            self._issue_certificate(reg.id, reg.round, notify=notify)

    def _issue_certificate(self, registration_id: str, round_: int, notify: bool = True) -> None:
        reg = self.registrations.get(registration_id)
        if reg is None or reg.round != round_ or reg.status != APPROVED:
            return
        reg.document = {"type": self.country.registration_document,
                        "number": self.country.document_number(_digest(self.seed, self.country.code, "doc",
                                                                       next(self._documents))),
                        "issuedAt": isoformat(self.service.clock.now())}
        self._move(reg, PLATE_ASSIGNED, notify=notify)

    # --- transitions and notifications ----------------------------------
    def _move(self, reg: Registration, status: str, *, notify: bool = True, reason: str | None = None) -> None:
        if status not in TRANSITIONS[reg.status]:
            raise AssertionError(f"{reg.id}: {reg.status} -> {status} is not a transition of the status model")
        now = self.service.clock.now()
        reg.status, reg.updated = status, now
        entry = {"status": status, "at": isoformat(now)}
        if reason:
            entry["reason"] = reason
        reg.history.append(entry)
        self.service.journal.event(f"registration.{status.lower()}", reg.entities(), plate=reg.plate)
        if notify and self.country.method is Method.ASYNCHRONOUS:
            self._callback(reg)

    def _callback(self, reg: Registration) -> None:
        entities = reg.entities()
        hooks = delivery_hooks(self.service.faults, CALLBACK_FAULTS, entities, reg.correlation_id,
                               reorder_by="registrationId")
        view = self.view(reg)
        payload = {k: view[k] for k in ("registrationId", "reference", "vin", "status", "plateNumber",
                                        "registrationDate", "requiredInfo", "rejection")}
        payload["timestamp"] = isoformat(self.service.clock.now())
        self.service.webhooks.send(STATUS_EVENT, payload, correlation_id=reg.correlation_id, entities=entities,
                                   hooks=hooks)

    # --- views ---------------------------------------------------------
    def view(self, reg: Registration) -> dict:
        owner = reg.request["owner"]
        return {
            "registrationId": reg.id, "country": self.country.iso, "authority": self.country.authority,
            "integrationMethod": self.country.method.value, "status": reg.status,
            "reference": reg.request.get("reference"), "vin": reg.vin,
            "owner": {"type": owner["type"], "name": owner["name"], "taxId": owner["taxId"]},
            "plateNumber": reg.plate,
            "registrationDate": reg.registration_date.isoformat() if reg.registration_date else None,
            "processingBusinessDays": reg.processing_days,
            "estimatedCompletionDate": reg.estimated.isoformat() if reg.estimated else None,
            "requiredInfo": reg.required_info, "rejection": reg.rejection,
            "registrationDocument": reg.document, "history": list(reg.history),
            "createdAt": isoformat(reg.created), "updatedAt": isoformat(reg.updated),
        }


# ---------------------------------------------------------------------- helpers


def _copy(body: dict) -> dict:
    """A private copy the model may update (additional info) without touching the caller's."""
    return {k: (_copy(v) if isinstance(v, dict) else [dict(d) for d in v] if isinstance(v, list) else v)
            for k, v in body.items()}


def _apply_values(request: dict, values: dict) -> dict:
    """Supplied values (``owner.driverLicense``...) written into the submission."""
    for name, value in values.items():
        section, key = name.split(".")
        request[section][key] = value
    return request


def _plate_request(body: dict, on: date) -> PlateRequest:
    address = body["owner"]["address"]
    return PlateRequest(on, address["city"], address["postalCode"], body["vehicle"]["engineType"] == "ELECTRIC")


def _invalid(errors: list[tuple[str, str]]) -> ProblemError:
    return ProblemError(422, "Invalid registration data", "; ".join(f"{f}: {m}" for f, m in errors),
                        kind="invalid-data", errors=[{"field": f, "message": m} for f, m in errors])


_DESCRIPTIONS = {
    "owner.driverLicense": "The owner's driving licence number",
    "owner.dateOfBirth": "The owner's date of birth",
    "vehicle.typeApprovalNumber": "The EU whole-vehicle type-approval number of the certificate of conformity",
}


def _describe(name: str) -> str:
    if name.startswith("documents."):
        return f"A {name.split('.', 1)[1].replace('_', ' ').lower()} document"
    return _DESCRIPTIONS.get(name, name)

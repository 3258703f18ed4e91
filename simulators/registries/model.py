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
- Past the newest ``REGISTRATIONS_KEPT`` (100,000) registrations, the oldest
  finished ones (PLATE_ASSIGNED or REJECTED) are forgotten: ``GET`` answers
  404, and their VIN may be submitted again (a real authority remembers every
  vehicle it registered).
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import date, time
from functools import lru_cache
from types import SimpleNamespace

from ..kit.clock import isoformat
from ..kit.delivery_faults import delivery_hooks
from ..kit.errors import ProblemError
from ..kit.retention import Retention
from ..kit.service import Service
from ..kit.untracked import RecordStore
from .availability import Maintenance, unavailable
from .business_days import Calendar
from .faults import register_faults
from .plates import PlateUnavailable
from .records import (
    FINISHED,
    STATUS,
    VIN,
    Plan,
    Registration,
    apply_values,
    finished,
    values,
)
from .validation import check_info, check_submission, invalid, plate_request
from .vocabulary import (
    APPROVED,
    CALLBACK_FAULTS,
    INFO_REQUIRED,
    INITIATED,
    MAGIC_INFO_FIELDS,
    PLATE_ASSIGNED,
    REJECTED,
    STATUS_EVENT,
    TRANSITIONS,
    UNDER_REVIEW,
    Country,
    Method,
    describe,
    window,
)

#: Registrations kept: past this many, the oldest finished ones are forgotten (404). A
#: count, not an age, as the payments and the factory keep theirs.
REGISTRATIONS_KEPT = 100_000


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
        self.maintenance = Maintenance(self.calendar, country.maintenance if raw_windows is None else tuple(
            window(w["weekday"], w["from"], w["until"]) for w in raw_windows))
        self.enforce_check_digit = bool(options.get("enforce_vin_check_digit", False))
        self.slow_extra_days = int(options.get("slow_extra_days", 10))
        self.plates = country.plates(self.seed, options)
        self.retention = Retention(service.clock.now, keep=REGISTRATIONS_KEPT)
        #: Registrations packed (records.py): unpacked by each entry point, written back whole
        #: (``_keep``) once it has changed one.
        self.registrations: RecordStore[Registration] = RecordStore(Registration.unpack, Registration.pack)
        self._latest_by_vin: dict[str, str] = {}  # the id of each VIN's latest registration
        self._ids = itertools.count(1)
        self._documents = itertools.count(1)
        # An asynchronous submission draws its plan twice (the registration date it
        # validates against, then the review): the second is a cache hit.
        self._draw = lru_cache(maxsize=256)(self._drawn)
        # One bound method per timer kind, not one per registration's timer (each is an
        # object the garbage collector tracks for as long as the timer waits).
        self._timers = SimpleNamespace(begin_review=self._begin_review, review_done=self._review_done,
                                       issue_certificate=self._issue_certificate)
        register_faults(service.faults, country)
        service.reset_hooks.append(self.reset)

    def reset(self) -> None:
        self.retention.clear()
        self.registrations.clear()
        self._latest_by_vin.clear()
        self.plates.reset()
        self._ids = itertools.count(1)
        self._documents = itertools.count(1)

    # --- what is kept ----------------------------------------------------
    def _keep(self, reg: Registration) -> None:
        """Write back a registration an entry point changed (every change ends here)."""
        self.registrations[reg.id] = reg
        self.retention.touched(reg.id, finished=reg.status in FINISHED)

    def prune(self) -> None:
        """Forget the oldest finished registrations past ``REGISTRATIONS_KEPT`` (kit/retention.py)."""
        for registration_id in self.retention.due():
            packed = self.registrations.raw(registration_id)
            if packed is None:
                continue
            if not finished(packed):
                self.retention.touched(registration_id, finished=False)  # until a change finishes it
                continue
            del self.registrations[registration_id]
            vin = values(packed)[VIN]
            if self._latest_by_vin.get(vin) == registration_id:
                del self._latest_by_vin[vin]  # the VIN may be submitted again

    # --- reads ---------------------------------------------------------
    def get(self, registration_id: str) -> dict:
        return self.view(self._lookup(registration_id, "getRegistration"))

    def _lookup(self, registration_id: str, operation: str) -> Registration:
        """The registration, once the registry is known to be available for ``operation``."""
        reg = self.registrations.get(registration_id)
        self._check_available(operation, reg.entities() if reg else {"registrationId": registration_id})
        if reg is None:
            raise ProblemError(404, "Unknown registration", f"no registration {registration_id} at the "
                               f"{self.country.authority}", kind="unknown-registration")
        return reg

    def availability(self) -> dict:
        now = self.service.clock.now()
        down = self.maintenance.until(now)
        outage = self.service.faults.peek("registry_unavailable", entities={})
        status, reason, until = "AVAILABLE", None, None
        if down is not None:
            status, reason, until = "UNAVAILABLE", "MAINTENANCE", isoformat(down)
        elif outage is not None:
            status, reason = "UNAVAILABLE", "OUTAGE"
            until = isoformat(now + outage.params["retry_after"])
        upcoming = self.maintenance.upcoming(now)
        return {"status": status, "reason": reason, "availableAgainAt": until,
                "integrationMethod": self.country.method.value,
                "timeZone": self.calendar.tz.key,
                "maintenanceWindows": [w.to_dict() for w in self.maintenance.windows],
                "nextMaintenance": None if upcoming is None else
                {"from": isoformat(upcoming[0]), "until": isoformat(upcoming[1])},
                "manualSubmission": dict(self.country.manual_submission)}

    # --- commands ------------------------------------------------------
    def create(self, body: dict, correlation_id: str | None = None) -> dict:
        self.prune()  # here only: nothing else adds a registration
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
        if other is not None:
            status = values(self.registrations.raw(other))[STATUS]  # forgetting one drops its VIN
            if status != REJECTED:
                raise ProblemError(409, "Vehicle already registered" if status == PLATE_ASSIGNED
                                   else "Registration in progress",
                                   f"{vehicle['vin']} has registration {other} ({status}); a new one can "
                                   "be submitted only after a rejection", kind="registration-exists",
                                   registrationId=other, registrationStatus=status)
        digest = hashlib.blake2b(f"{self.seed}:{self.country.code}:registration:{next(self._ids)}".encode(),
                                 digest_size=8).hexdigest()
        reg = Registration(f"reg_{self.country.code.lower()}_{digest}", body, correlation_id, now)
        self._latest_by_vin[reg.vin] = reg.id
        try:
            self._move(reg, INITIATED, notify=False)
            if sync:
                self._move(reg, UNDER_REVIEW, notify=False)
                reg.round = 1
                self._decide(reg, body, notify=False)
            else:
                self._start_review(reg, self._plan(reg.vin, reg.tax_id, 1, now, reg.entities()), now)
        finally:  # kept as far as it got, as an object changed in place was
            self._keep(reg)
        return self.view(reg)

    def provide_info(self, registration_id: str, body: dict, correlation_id: str | None = None) -> dict:
        reg = self._lookup(registration_id, "provideAdditionalInfo")
        if reg.status != INFO_REQUIRED:
            raise ProblemError(409, "Not awaiting additional information",
                               f"registration {reg.id} is {reg.status}; information is accepted only while it is "
                               f"{INFO_REQUIRED}", kind="not-awaiting-info", registrationStatus=reg.status)
        errors = check_info(reg, body, self.country, self._today())
        if rule := self.service.domain_fault("invalid_data", entities=reg.entities(), operation="provideAdditionalInfo",
                                             correlation_id=correlation_id):
            errors.append((rule.params["field"], rule.params["message"]))
        if errors:
            raise invalid(errors)  # nothing changed yet
        request = reg.request
        documents = {d["type"]: d for d in request.get("documents", [])}
        documents.update({d["type"]: d for d in body.get("documents", [])})
        request["documents"] = list(documents.values())
        try:
            reg.keep(apply_values(request, body.get("values", {})))
            reg.info_rounds += 1
            reg.required_info = None
            self._move(reg, UNDER_REVIEW, notify=False)
            now = self.service.clock.now()
            if self.country.method is Method.SYNCHRONOUS:
                reg.round += 1
                self._decide(reg, request, notify=False)
            else:
                self._start_review(reg, self._plan(reg.vin, reg.tax_id, reg.round + 1, now, reg.entities()), now)
        finally:
            self._keep(reg)
        return self.view(reg)

    # --- availability --------------------------------------------------
    def _check_available(self, operation: str, entities: dict, *, magic: bool = False) -> None:
        now = self.service.clock.now()
        until = self.maintenance.until(now)
        if until is not None:
            raise unavailable(self.country, now, "MAINTENANCE", until - now,
                              f"scheduled maintenance until {isoformat(until)}")
        rule = self.service.domain_fault("registry_unavailable", entities=entities, operation=operation)
        if rule is not None:
            raise unavailable(self.country, now, "OUTAGE", rule.params["retry_after"],
                              f"outage (fault rule {rule.id})", ruleId=rule.id)
        if magic:
            raise unavailable(self.country, now, "OUTAGE", 3600, "outage (magic tax id)")

    # --- validation ----------------------------------------------------
    def _today(self) -> date:
        return self.calendar.local(self.service.clock.now()).date()

    def _validate(self, body: dict, registration_day: date, entities: dict, correlation_id: str | None) -> None:
        """Everything the schema cannot say; all errors at once (422)."""
        errors = check_submission(body, self.country, self.plates, self._today(), registration_day,
                                  self.enforce_check_digit)
        if rule := self.service.domain_fault("invalid_data", entities=entities, operation="createRegistration",
                                             correlation_id=correlation_id):
            errors.append((rule.params["field"], rule.params["message"]))
        if errors:
            raise invalid(errors)

    # --- the review ----------------------------------------------------
    def _plan(self, vin: str, tax_id: str, round_: int, start: float, entities: dict | None = None) -> Plan:
        """The published plan; with ``entities``, the real one (slow magic and delay faults applied)."""
        days, minute = self._draw(vin, round_)
        extra = 0
        if entities is not None:
            extra = self.slow_extra_days if self.country.magic_tax_ids.get(tax_id) == "slow" else 0
            if rule := self.service.domain_fault("processing_delay", entities=entities):
                extra += rule.params["business_days"]
        day = self.calendar.local(start).date()
        estimated = self.calendar.add_business_days(day, days)
        actual = self.calendar.add_business_days(day, days + extra)
        return Plan(days, estimated, self.calendar.at(actual, minute))

    def _drawn(self, vin: str, round_: int) -> tuple[int, time]:
        """The seeded part of a review's plan: its business days and the minute of the decision."""
        lo, hi = self.processing_days
        days = lo + _digest(self.seed, self.country.code, vin, round_, "days") % (hi - lo + 1)
        return days, self.calendar.office_minute(_digest(self.seed, self.country.code, vin, round_, "minute"))

    def _start_review(self, reg: Registration, plan: Plan, now: float) -> None:
        reg.round += 1
        reg.processing_days, reg.estimated = plan.business_days, plan.estimated
        if reg.status == INITIATED:
            opening = self.calendar.next_opening(now)
            if opening <= now:
                self._move(reg, UNDER_REVIEW, notify=False)
            else:  # submitted out of office hours: the file waits for the next opening
                self.service.at(opening, self._timers.begin_review, reg.id, reg.round)
        self.service.at(plan.due, self._timers.review_done, reg.id, reg.round)

    # The timers' callbacks below are entry points too: each unpacks its registration and
    # writes it back once, after every helper it calls has changed that one object.
    def _begin_review(self, registration_id: str, round_: int) -> None:
        reg = self.registrations.get(registration_id)
        if reg is not None and reg.round == round_ and reg.status == INITIATED:
            try:
                self._move(reg, UNDER_REVIEW)
            finally:
                self._keep(reg)

    def _review_done(self, registration_id: str, round_: int) -> None:
        reg = self.registrations.get(registration_id)
        if reg is None or reg.round != round_ or reg.status not in (INITIATED, UNDER_REVIEW):
            return  # reset, forgotten or superseded
        try:
            if reg.status == INITIATED:  # the opening and the decision fell on the same instant
                self._move(reg, UNDER_REVIEW)
            self._decide(reg, reg.request)
        finally:
            self._keep(reg)

    def _decide(self, reg: Registration, request: dict, notify: bool = True) -> None:
        """``request``: the submission as kept (the caller's, when at hand, saves decoding it);
        ``reg`` is changed, the caller writes it back."""
        entities = reg.entities()
        take = lambda action: self.service.domain_fault(action, entities=entities, correlation_id=reg.correlation_id)
        magic = self.country.magic_tax_ids.get(reg.tax_id)
        if rule := take("registration_rejected"):
            return self._reject(reg, rule.params["code"], rule.params["reason"], notify)
        if rule := take("additional_info_required"):
            return self._require(reg, rule.params["fields"], notify)
        if magic == "rejected":
            return self._reject(reg, *self.country.magic_rejection, notify)
        present = {d["type"] for d in request.get("documents", [])}
        missing = [f"documents.{t}" for t in self.country.required_documents if t not in present]
        if missing:
            return self._require(reg, missing, notify)
        if magic == "additional_info" and reg.info_rounds == 0:
            return self._require(reg, list(MAGIC_INFO_FIELDS), notify)
        self._approve(reg, request, notify)

    def _reject(self, reg: Registration, code: str, reason: str, notify: bool) -> None:
        reg.rejection = {"code": code, "reason": reason}
        self._move(reg, REJECTED, notify=notify, reason=reason)

    def _require(self, reg: Registration, fields: list[str], notify: bool) -> None:
        reg.required_info = {"fields": [{"field": f, "description": describe(f)} for f in dict.fromkeys(fields)],
                             "requestedAt": isoformat(self.service.clock.now())}
        self._move(reg, INFO_REQUIRED, notify=notify)

    def _approve(self, reg: Registration, request: dict, notify: bool) -> None:
        now = self.service.clock.now()
        today = self.calendar.local(now).date()
        try:
            plate = self.plates.issue(plate_request(request, today))
        except PlateUnavailable as exc:  # a series ran out: the authority cannot register now
            return self._reject(reg, "OTHER", str(exc), notify)
        reg.plate, reg.registration_date = plate, today
        self._move(reg, APPROVED, notify=notify)
        if self.country.method is Method.SYNCHRONOUS:
            # The certificate (and with it the plate) is issued after the processing time.
            plan = self._plan(reg.vin, reg.tax_id, reg.round, now, reg.entities())
            reg.processing_days, reg.estimated = plan.business_days, plan.estimated
            self.service.at(plan.due, self._timers.issue_certificate, reg.id, reg.round)
        else:
            self._certify(reg, notify)

    def _issue_certificate(self, registration_id: str, round_: int) -> None:
        reg = self.registrations.get(registration_id)
        if reg is None or reg.round != round_ or reg.status != APPROVED:
            return
        try:
            self._certify(reg, notify=True)
        finally:
            self._keep(reg)

    def _certify(self, reg: Registration, notify: bool) -> None:
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
        return {
            "registrationId": reg.id, "country": self.country.iso, "authority": self.country.authority,
            "integrationMethod": self.country.method.value, "status": reg.status,
            "reference": reg.reference, "vin": reg.vin,
            "owner": {"type": reg.owner_type, "name": reg.owner_name, "taxId": reg.tax_id},
            "plateNumber": reg.plate,
            "registrationDate": reg.registration_date.isoformat() if reg.registration_date else None,
            "processingBusinessDays": reg.processing_days,
            "estimatedCompletionDate": reg.estimated.isoformat() if reg.estimated else None,
            "requiredInfo": reg.required_info, "rejection": reg.rejection,
            "registrationDocument": reg.document, "history": list(reg.history),
            "createdAt": isoformat(reg.created), "updatedAt": isoformat(reg.updated),
        }

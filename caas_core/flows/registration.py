"""Registering the vehicle with its country's authority, after the final payment.

Submission is a job: transient failures (5xx, timeouts) are retried up to three times,
then the documents are prepared for submission by hand and the dealership's staff are
alerted; invalid data (422) goes to the staff to correct and resubmit. The authority's
decisions arrive in the answer (Spain, France), by polling (Germany, and everyone after
the published completion date) or by webhook (UK); all go through ``apply``, which only
moves forward. ADDITIONAL_INFO_REQUIRED is answered at once with what CaaS holds, or by
the staff when a value is missing; REJECTED waits for the staff to correct and resubmit,
or to cancel the sale with a refund. PLATE_ASSIGNED makes the vehicle ready for delivery.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from ..clients.http import Rejected, Unavailable
from ..clients.wire.base import Unusable
from ..clients.wire.registries import RegistrationReport, parse_event
from ..domain import registration as reg
from ..domain.errors import Conflict, PeerUnavailable, Refused
from ..domain.registration import NEEDS_STAFF, RegStatus
from ..domain.sale import SaleStatus
from ..store import inbox, jobs
from . import sale_records as rec
from .core import Core
from .runner import JobContext

SUBMIT, POLL, DELIVER = "registration.submit", "registration.poll", "delivery.schedule"
DAY = 86400.0
__all__ = ["DELIVER", "NEEDS_STAFF", "POLL", "SUBMIT"]


def _registry(core: Core, sale):
    return core.registries[sale["country"]]


async def submit(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    async with core.db.transaction(readonly=True) as conn:
        sale = await rec.load(conn, job.payload["saleId"])
    if sale["status"] != SaleStatus.REGISTRATION.value or sale["registration_status"] != RegStatus.NOT_STARTED:
        async with core.db.transaction() as conn:
            await jobs.complete(conn, job.id)
        return
    detail = dict(sale["registration_detail"] or {})
    submission = detail.get("submissions", 0) + 1
    request = reg.request({**sale, **sale["plan"], "id": sale["id"]}, sale["vin"], core.clock.now())
    cid = job.correlation_id or sale["id"]
    try:
        answer = await _registry(core, sale).submit(request, key=f"{sale['id']}:registration:{submission}",
                                                    correlation_id=cid)
    except Unavailable as exc:
        await _unavailable(core, job, sale, exc, request)
        return
    except Rejected as exc:
        problem = exc.problem or {}
        if exc.status == 409 and problem.get("registrationId"):  # already submitted: follow that one
            answer = await _registry(core, sale).get(problem["registrationId"], correlation_id=cid)
        else:
            await _invalid(core, job, sale, problem or {"detail": str(exc)}, submission)
            return
    async with core.db.transaction() as conn:
        sale = await rec.load(conn, sale["id"], lock=True)
        await rec.change(conn, sale["id"], core.clock.now(), registration_id=answer.registrationId,
                         registration_attempts=0,
                         registration_detail={**detail, "submissions": submission})
        await rec.record(conn, sale["id"], "REGISTRATION_SUBMITTED", {"registrationId": answer.registrationId,
                                                                      "authority": answer.authority},
                         core.clock.now())
        await apply(core, conn, await rec.load(conn, sale["id"]), answer)
        await jobs.complete(conn, job.id)
    core.wake()


async def _unavailable(core: Core, job: jobs.Job, sale, exc: Unavailable, request: dict) -> None:
    now = core.clock.now()
    failures = sale["registration_attempts"] + 1
    async with core.db.transaction() as conn:
        await rec.record(conn, sale["id"], "REGISTRATION_UNAVAILABLE", {"reason": str(exc), "failures": failures}, now)
        if failures <= reg.SUBMISSION_RETRIES:
            await rec.change(conn, sale["id"], now, registration_attempts=failures)
            delay = reg.SUBMISSION_BACKOFF[min(failures, len(reg.SUBMISSION_BACKOFF)) - 1]
            await jobs.retry(conn, job.id, run_at=now + delay, error=str(exc))
            return
        manual = (exc.problem or {}).get("manualSubmission")
        detail = {**(sale["registration_detail"] or {}),
                  "manualSubmission": {"channel": (manual or {}).get("channel", "the authority's office"),
                                       "url": (manual or {}).get("url"), "documents": request["documents"],
                                       "request": request}}
        await rec.change(conn, sale["id"], now, registration_status=RegStatus.MANUAL_SUBMISSION.value,
                         registration_attempts=failures, registration_detail=detail)
        await rec.alert_dealership(conn, sale["dealership_id"], "REGISTRATION_MANUAL_SUBMISSION_REQUIRED", now,
                                   sale_id=sale["id"], channel=detail["manualSubmission"]["channel"],
                                   url=detail["manualSubmission"]["url"],
                                   documents=[d["type"] for d in request["documents"]])
        await rec.tell_customer(conn, sale, "REGISTRATION_DELAYED_MANUAL_PROCESS", now)
        await jobs.complete(conn, job.id)


async def _invalid(core: Core, job: jobs.Job, sale, problem: dict, submission: int) -> None:
    now = core.clock.now()
    errors = problem.get("errors") or [{"field": None, "message": problem.get("detail", "invalid data")}]
    async with core.db.transaction() as conn:
        # The refused submission counts: the corrected one is a new submit job and a new
        # Idempotency-Key at the registry (the same key would replay the refusal).
        await rec.change(conn, sale["id"], now, registration_status=RegStatus.INVALID_DATA.value,
                         registration_detail={**(sale["registration_detail"] or {}), "errors": errors,
                                              "submissions": submission})
        await rec.record(conn, sale["id"], "REGISTRATION_INVALID_DATA", {"errors": errors}, now)
        await rec.alert_dealership(conn, sale["dealership_id"], "REGISTRATION_DATA_TO_CORRECT", now,
                                   sale_id=sale["id"], errors=errors)
        await rec.tell_customer(conn, sale, "REGISTRATION_ISSUE_DEALERSHIP_WILL_CONTACT", now)
        await jobs.complete(conn, job.id)


async def apply(core: Core, conn, sale, registration: RegistrationReport) -> str:
    """An authority's report (answer, poll or webhook): move forward, never back."""
    now = core.clock.now()
    status = registration.status
    if sale["status"] != SaleStatus.REGISTRATION.value or not reg.is_newer(sale["registration_status"], status):
        await rec.record(conn, sale["id"], "REGISTRATION_REPORT_IGNORED", {"status": status}, now)
        return f"ignored {status} (registration is {sale['registration_status']})"
    detail = {k: v for k, v in (sale["registration_detail"] or {}).items()
              if k not in ("requiredFields", "missingValues", "rejection", "errors")}
    values: dict[str, Any] = {"registration_status": status}
    if registration.plateNumber:
        values["plate_number"] = registration.plateNumber
    rejection = registration.rejection.model_dump() if registration.rejection else None
    await rec.record(conn, sale["id"], "REGISTRATION_STATUS", {
        "status": status, "plateNumber": registration.plateNumber, "rejection": rejection,
        "requiredInfo": registration.requiredInfo.model_dump() if registration.requiredInfo else None}, now)
    if status == RegStatus.PLATE_ASSIGNED:
        values["status"] = SaleStatus.READY_FOR_DELIVERY.value
        await rec.change(conn, sale["id"], now, registration_detail=detail, **values)
        await rec.tell_customer(conn, sale, "VEHICLE_REGISTERED_READY_FOR_DELIVERY", now,
                                plateNumber=values.get("plate_number") or sale["plate_number"])
        await jobs.enqueue(conn, DELIVER, {"saleId": sale["id"]}, run_at=now, now=now,
                           dedupe_key=f"{DELIVER}:{sale['id']}:1")
    elif status == RegStatus.ADDITIONAL_INFO_REQUIRED:
        fields = [f.field for f in registration.requiredInfo.fields] if registration.requiredInfo else []
        known = _known_values(sale)
        missing = reg.missing_values(fields, known)
        detail.update(requiredFields=fields, missingValues=missing)
        await rec.change(conn, sale["id"], now, registration_detail=detail, **values)
        if missing:  # only the staff can get these from the customer
            await rec.alert_dealership(conn, sale["dealership_id"], "REGISTRATION_INFO_REQUIRED", now,
                                       sale_id=sale["id"], missing=missing)
        else:  # CaaS holds everything asked for: answer at once
            await jobs.enqueue(conn, SUBMIT_INFO, {"saleId": sale["id"], "values": {}}, run_at=now, now=now,
                               dedupe_key=f"{SUBMIT_INFO}:{sale['id']}:{detail.get('submissions', 0)}:"
                                          f"{detail.get('infoRounds', 0)}")
        await rec.tell_customer(conn, sale, "REGISTRATION_ADDITIONAL_INFO_REQUESTED", now, fields=fields,
                                missing=missing)
    elif status == RegStatus.REJECTED:
        detail["rejection"] = rejection
        await rec.change(conn, sale["id"], now, registration_detail=detail, **values)
        await rec.alert_dealership(conn, sale["dealership_id"], "REGISTRATION_REJECTED", now, sale_id=sale["id"],
                                   rejection=rejection)
        await rec.tell_customer(conn, sale, "REGISTRATION_ISSUE_DEALERSHIP_WILL_CONTACT", now,
                                rejection=rejection)
    else:  # initiated, under review, approved: wait for the authority
        await rec.change(conn, sale["id"], now, registration_detail=detail, **values)
        if status == RegStatus.UNDER_REVIEW and sale["registration_status"] == RegStatus.NOT_STARTED:
            await rec.tell_customer(conn, sale, "REGISTRATION_UNDER_REVIEW", now,
                                    expected=registration.estimated_completion)
        await _poll_later(conn, sale, registration, now)
    return f"applied {status}"


def _known_values(sale) -> dict:
    customer = sale["plan"]["customer"]
    known = {"vehicle.typeApprovalNumber": reg.SPECS[sale["model"]].type_approval}
    if customer.get("dateOfBirth"):
        known["owner.dateOfBirth"] = customer["dateOfBirth"]
    if customer.get("driverLicense"):
        known["owner.driverLicense"] = customer["driverLicense"]
    return known


async def _poll_later(conn, sale, registration: RegistrationReport, now: float) -> None:
    """Look again after the published completion date (evening, local office closed), then daily."""
    when = now + DAY
    estimate = registration.estimated_completion
    if estimate:
        due = datetime.combine(datetime.fromisoformat(estimate).date(), time(20, 0), UTC).timestamp()
        if due > now:
            when = due
    await jobs.enqueue(conn, POLL, {"saleId": sale["id"], "registrationId": registration.registrationId},
                       run_at=when, now=now, dedupe_key=f"{POLL}:{registration.registrationId}:{int(when)}")


async def poll(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    async with core.db.transaction(readonly=True) as conn:
        sale = await rec.load(conn, job.payload["saleId"])
    if sale["registration_id"] != job.payload["registrationId"] or sale["registration_status"] not in reg.PENDING:
        async with core.db.transaction() as conn:
            await jobs.complete(conn, job.id)
        return
    try:
        answer = await _registry(core, sale).get(sale["registration_id"], correlation_id=sale["id"])
    except Unavailable as exc:
        async with core.db.transaction() as conn:
            await jobs.retry(conn, job.id, run_at=core.clock.now() + 3600, error=str(exc))
        return
    async with core.db.transaction() as conn:
        sale = await rec.load(conn, sale["id"], lock=True)
        if answer.status in reg.PENDING and not reg.is_newer(sale["registration_status"], answer.status):
            await _poll_later(conn, sale, answer, core.clock.now())  # nothing new yet
        else:
            await apply(core, conn, sale, answer)
        await jobs.complete(conn, job.id)
    core.wake()


SUBMIT_INFO = "registration.additional_info"


async def submit_info(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    async with core.db.transaction(readonly=True) as conn:
        sale = await rec.load(conn, job.payload["saleId"])
    if sale["registration_status"] != RegStatus.ADDITIONAL_INFO_REQUIRED:
        async with core.db.transaction() as conn:
            await jobs.complete(conn, job.id)
        return
    try:
        await _send_info(core, sale, job.payload["values"], job.correlation_id or sale["id"])
    except Unavailable as exc:
        async with core.db.transaction() as conn:
            await jobs.retry(conn, job.id, run_at=core.clock.now() + 300, error=str(exc))
        return
    async with core.db.transaction() as conn:
        await jobs.complete(conn, job.id)


async def _send_info(core: Core, sale, supplied: dict, correlation_id: str) -> None:
    detail = sale["registration_detail"] or {}
    fields = detail.get("requiredFields", [])
    body = reg.additional_info(sale["id"], sale["country"], fields, {**_known_values(sale), **supplied})
    rounds = detail.get("infoRounds", 0) + 1
    answer = await _registry(core, sale).additional_info(sale["registration_id"], body,
                                                         key=f"{sale['id']}:info:{rounds}",
                                                         correlation_id=correlation_id)
    async with core.db.transaction() as conn:
        sale = await rec.load(conn, sale["id"], lock=True)
        await rec.change(conn, sale["id"], core.clock.now(), registration_detail={**detail, "infoRounds": rounds})
        await rec.record(conn, sale["id"], "REGISTRATION_INFO_PROVIDED", {"fields": fields}, core.clock.now())
        await apply(core, conn, await rec.load(conn, sale["id"]), answer)
    core.wake()


async def on_registry_event(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    """The UK's asynchronous decisions (``registrationStatus`` webhook)."""
    from sqlalchemy import select

    from ..store.schema import sales

    now = core.clock.now()
    try:
        event = parse_event(job.payload["body"])
    except Unusable as exc:  # stored before the receiver parsed bodies: recorded, never retried
        event, outcome = None, exc.outcome
    async with core.db.transaction() as conn:
        if event is not None:
            sale_id = await conn.scalar(select(sales.c.id).where(sales.c.registration_id == event.registrationId))
            outcome = "unknown registration"
            if sale_id is not None:
                outcome = await apply(core, conn, await rec.load(conn, sale_id, lock=True), event)
        await inbox.mark_processed(conn, job.payload["source"], job.payload["webhookId"], outcome, now)
        await jobs.complete(conn, job.id)
    core.wake()


# --- what the dealership's staff do ------------------------------------------------------

async def provide_info(core: Core, sale_id: str, values: dict, correlation_id: str) -> None:
    async with core.db.transaction(readonly=True) as conn:
        sale = await rec.load(conn, sale_id)
    _staff_require(sale, RegStatus.ADDITIONAL_INFO_REQUIRED)
    missing = reg.missing_values((sale["registration_detail"] or {}).get("requiredFields", []),
                                 {**_known_values(sale), **values})
    if missing:
        raise Refused("Information missing", f"the authority asked for {', '.join(missing)}",
                      kind="information-missing", missing=missing)
    try:
        await _send_info(core, sale, values, correlation_id)
    except Unavailable as exc:
        raise PeerUnavailable("Registry unavailable", str(exc), kind="registry-unavailable") from None
    except Rejected as exc:
        raise Refused("Information refused", (exc.problem or {}).get("detail") or str(exc),
                      kind="information-refused", errors=(exc.problem or {}).get("errors")) from None


async def resubmit(core: Core, sale_id: str, corrections: dict, correlation_id: str) -> None:
    """Retry with corrections (customer data, insurance) after a rejection or invalid data."""
    now = core.clock.now()
    async with core.db.transaction() as conn:
        sale = await rec.load(conn, sale_id, lock=True)
        _staff_require(sale, RegStatus.REJECTED, RegStatus.INVALID_DATA)
        plan = dict(sale["plan"])
        plan["customer"] = {**plan["customer"], **corrections.get("customer", {})}
        plan["insurance"] = {**plan["insurance"], **corrections.get("insurance", {})}
        submissions = (sale["registration_detail"] or {}).get("submissions", 0)
        await rec.change(conn, sale_id, now, plan=plan, registration_status=RegStatus.NOT_STARTED.value,
                         registration_attempts=0, registration_detail={"submissions": submissions})
        await rec.record(conn, sale_id, "REGISTRATION_RESUBMITTED", {"corrected": sorted(
            f"{part}.{key}" for part, fields in corrections.items() for key in fields)}, now)
        await jobs.enqueue(conn, SUBMIT, {"saleId": sale_id}, run_at=now, now=now,
                           dedupe_key=f"{SUBMIT}:{sale_id}:{submissions}", correlation_id=correlation_id)
    core.wake()


async def record_manual(core: Core, sale_id: str, plate: str, registration_date: str) -> None:
    """The staff submitted by hand and got the plate: continue to delivery."""
    now = core.clock.now()
    async with core.db.transaction() as conn:
        sale = await rec.load(conn, sale_id, lock=True)
        _staff_require(sale, RegStatus.MANUAL_SUBMISSION)
        await rec.change(conn, sale_id, now, registration_status=RegStatus.PLATE_ASSIGNED.value,
                         plate_number=plate, status=SaleStatus.READY_FOR_DELIVERY.value)
        await rec.record(conn, sale_id, "REGISTRATION_COMPLETED_MANUALLY", {"plateNumber": plate,
                                                                            "registrationDate": registration_date}, now)
        await rec.tell_customer(conn, sale, "VEHICLE_REGISTERED_READY_FOR_DELIVERY", now, plateNumber=plate)
        await jobs.enqueue(conn, DELIVER, {"saleId": sale_id}, run_at=now, now=now, dedupe_key=f"{DELIVER}:{sale_id}:1")
    core.wake()


def _staff_require(sale, *statuses: RegStatus) -> None:
    if sale["status"] != SaleStatus.REGISTRATION.value or sale["registration_status"] not in statuses:
        raise Conflict("Registration not in that state", f"the sale is {sale['status']} and its registration "
                      f"{sale['registration_status']}; this needs {' or '.join(statuses)}", kind="sale-conflict",
                      saleStatus=sale["status"], registrationStatus=sale["registration_status"])

"""The core's HTTP API: the customer-facing operations, the webhook receivers, the admin protocol.

HTTP only: authenticate, parse, call a flow, serialise. Errors are problem+json.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from caas_sim import catalogue
from caas_sim.logs import CORRELATION

from .. import compose
from ..clock import ClockError, CoreClock, isoformat, parse_duration, parse_instant
from ..domain.errors import DomainError
from ..flows import (
    billing,
    lifecycle,
    manual_payments,
    pruning,
    purchases,
    webhooks,
)
from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..settings import CoreSettings
from ..store import inspect, jobs, outbox
from ..store.db import DatabaseUnavailable, create_schema, drop_schema
from . import quiesce, validation
from . import sales as sales_api
from .audit import get_audit
from .auth import authenticate, require_owner, require_role
from .context import CORE_KEY, REQUESTS_KEY, RUNNER_KEY, require_admin
from .problems import ANSWERS_IN_PROBLEMS, Problem, problem_of
from .webhook_auth import verify

log = logging.getLogger("caas_core.api")

#: Path of each webhook receiver (its last segment) -> the source whose secret signs it.
WEBHOOK_SOURCES = {path.rsplit("/", 1)[1]: name for name, path in catalogue.WEBHOOK_SENDERS.items()}
MAX_BODY = 256 * 1024


class PaymentMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["CARD", "BANK_TRANSFER"]
    token: str = Field(pattern=r"^pm_[A-Za-z0-9_]{1,61}$")  # the gateway's tokens: 64 characters at most


class Amount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: int = Field(ge=0, le=100_000_000_000)  # minor units
    currency: Literal["EUR", "GBP", "USD"]


class ManualPayment(BaseModel):
    """What an operator took by hand for a purchase in MANUAL_PAYMENT."""
    model_config = ConfigDict(extra="forbid")
    reference: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")
    amount: Amount


class PurchaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    serviceId: str = Field(pattern=r"^[a-z][a-z0-9-]{1,63}$")
    durationType: Literal["TEMPORARY", "PERMANENT", "SUBSCRIPTION"]
    paymentMethod: PaymentMethod


def create_app(settings: CoreSettings, *, clock: CoreClock | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_problems])
    app[ANSWERS_IN_PROBLEMS] = True
    app[REQUESTS_KEY] = quiesce.Requests()
    clock = clock or CoreClock.parse(settings.clock)

    async def start(app: web.Application) -> None:
        assembly = await compose.assemble(settings, clock, worker=f"core-{os.getpid()}-{id(app):x}")  # unique per process
        core, runner = assembly.core, assembly.runner
        app[CORE_KEY], app[RUNNER_KEY] = core, runner
        stop = asyncio.Event()
        serving = asyncio.ensure_future(runner.serve(stop) if settings.run_jobs else stop.wait())

        async def close(_: web.Application) -> None:
            stop.set()
            await serving
            await assembly.close()

        app.on_cleanup.append(close)

    app.on_startup.append(start)
    r = app.router
    r.add_get("/catalogue/services", list_services)
    r.add_post("/customers/{customerId}/vehicles/{vin}/purchases", purchase_service)
    r.add_get("/customers/{customerId}/purchases", list_purchases)
    r.add_get("/purchases/{purchaseId}", get_purchase)
    r.add_post("/purchases/{purchaseId}/withdrawal", withdraw_purchase)
    r.add_post("/purchases/{purchaseId}/manual-payment", record_manual_payment)
    r.add_get("/purchases/{purchaseId}/invoices", list_invoices)
    r.add_get("/customers/{customerId}/notifications", list_notifications)
    r.add_get("/support/tickets", list_tickets)
    sales_api.routes(app, CORE_KEY, _principal, _cid)
    r.add_post("/caas/webhooks/{source}", receive_webhook)
    r.add_get("/metrics", metrics)
    r.add_get("/__admin/health", health)
    r.add_get("/__admin/clock", get_clock)
    r.add_post("/__admin/clock", move_clock)
    r.add_post("/__admin/reset", reset)
    r.add_get("/__admin/audit", get_audit)
    return app


@web.middleware
async def _problems(request: web.Request, handler):
    app = request.app  # a property that looks the app up: once
    core, requests = app[CORE_KEY], app[REQUESTS_KEY]
    if not requests.open.is_set():  # the world is being reset: this request is for the fresh one
        await requests.open.wait()
    task = asyncio.current_task()
    requests.at_work.add(task)
    core.in_flight += 1
    started, status = time.perf_counter(), 500
    given = request.headers.get("X-Correlation-Id")
    CORRELATION.set(given if given and len(given) <= 128 and given.isascii() and given.isprintable() else None)
    try:
        response = await _answer(request, handler)
        status = response.status
        return response
    finally:
        core.in_flight -= 1
        requests.at_work.discard(task)
        if core.metrics is not None:
            resource = request.match_info.route.resource
            core.metrics.request((request.method, resource.canonical if resource is not None else "unmatched"),
                                 status, time.perf_counter() - started)


async def _answer(request: web.Request, handler) -> web.StreamResponse:
    """The handler's answer, every error as problem+json."""
    try:
        validation.check_headers(request.headers)  # first: no route may read a header that is not text
        path = request.path
        if path.startswith("/caas/webhooks/"):  # read (so size-limited) by the receiver, which checks
            return await handler(request)        # the signature first: the hot path, kept short
        if request.body_exists:  # the size limit (413) holds on every route, not only on those that read
            await request.read()
        # Admin routes (and the metrics) answer their own protocol.
        if not path.startswith("/__admin/") and path != "/metrics":
            if request.match_info.http_exception is None:  # the contract's order: 401 before 400
                _principal(request)
            await validation.check(request)
        return await handler(request)
    except Problem as exc:
        return exc.response()
    except DomainError as exc:
        return problem_of(exc).response()
    except DatabaseUnavailable as exc:  # nothing was done: the caller may retry
        log.warning("%s %s: %s", request.method, request.path, exc)  # the URL's password is masked
        return Problem(503, "Service unavailable", "the core's database is unavailable; nothing was done",
                       kind="database-unavailable", headers={"Retry-After": "5"}).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return Problem(exc.status, exc.reason, headers=allow).response()


def _json(body, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _principal(request: web.Request):
    return authenticate(request.headers.get("Authorization"), request.app[CORE_KEY].settings.api_keys)


def _cid(request: web.Request) -> str:
    """The request's correlation id: the caller's (the middleware kept it if valid), else one
    made now, on the first call only (ids are drawn in order in a seeded world) and set for
    the logs, so that the core's lines carry the id its calls and jobs go by."""
    given = CORRELATION.get()
    if given is None:
        given = request.app[CORE_KEY].new_id("cor")
        CORRELATION.set(given)  # the handler's task: the access line is written there too
    return given


async def list_services(request: web.Request) -> web.Response:
    _principal(request)
    return _json({"services": [_offer(offer) for offer in request.app[CORE_KEY].catalogue]})


def _offer(offer) -> dict:
    return {"serviceId": offer.service_id, "name": offer.name, "description": offer.description,
            "featureFlags": list(offer.feature_flags),
            "prices": {d.value: price.to_json() for d, price in offer.prices.items()},
            "temporaryDays": offer.temporary_days,
            "maintenanceRequirements": [{"block": r.block.display_name, "minPercent": r.min_pct}
                                        for r in offer.requirements]}


async def purchase_service(request: web.Request) -> web.Response:
    principal = _principal(request)
    customer_id, vin = request.match_info["customerId"], request.match_info["vin"]
    require_owner(principal, customer_id)
    try:
        body = PurchaseRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        raise Problem(400, "Invalid request", "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()), kind="invalid-request")
    view = await purchases.purchase(request.app[CORE_KEY], customer_id=customer_id, vin=vin,
                                    service_id=body.serviceId, duration_type=body.durationType,
                                    method_type=body.paymentMethod.type, token=body.paymentMethod.token,
                                    correlation_id=_cid(request),
                                    idempotency_key=request.headers.get("Idempotency-Key"))
    headers = {"Location": f"/purchases/{view['purchaseId']}"}
    if view.pop("replayed", False):
        headers["Idempotent-Replayed"] = "true"
    return _json(view, 201, headers)


async def get_purchase(request: web.Request) -> web.Response:
    principal = _principal(request)
    core = request.app[CORE_KEY]
    purchase_id = request.match_info["purchaseId"]
    require_owner(principal, await purchases.owner_of(core, purchase_id))
    return _json(await purchases.view(core, purchase_id))


async def withdraw_purchase(request: web.Request) -> web.Response:
    principal = _principal(request)
    core = request.app[CORE_KEY]
    purchase_id = request.match_info["purchaseId"]
    require_owner(principal, await purchases.owner_of(core, purchase_id))
    return _json(await lifecycle.withdraw(core, purchase_id, _cid(request)))


async def record_manual_payment(request: web.Request) -> web.Response:
    principal = _principal(request)
    require_role(principal, "operator")
    body = _body(ManualPayment, await request.read())
    view = await manual_payments.record(request.app[CORE_KEY], request.match_info["purchaseId"],
                                        reference=body.reference, amount_minor=body.amount.value,
                                        currency=body.amount.currency, operator=principal.subject,
                                        correlation_id=_cid(request))
    return _json(view)


def _body(model: type[BaseModel], raw: bytes):
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise Problem(400, "Invalid request", "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()), kind="invalid-request")


async def list_invoices(request: web.Request) -> web.Response:
    principal = _principal(request)
    core = request.app[CORE_KEY]
    purchase_id = request.match_info["purchaseId"]
    require_owner(principal, await purchases.owner_of(core, purchase_id))
    return _json({"invoices": await billing.invoices_for(core, purchase_id)})


async def list_purchases(request: web.Request) -> web.Response:
    principal = _principal(request)
    require_owner(principal, request.match_info["customerId"])
    return _json({"purchases": await purchases.for_customer(request.app[CORE_KEY], request.match_info["customerId"])})


async def list_notifications(request: web.Request) -> web.Response:
    principal = _principal(request)
    customer_id = request.match_info["customerId"]
    require_owner(principal, customer_id)
    async with request.app[CORE_KEY].db.transaction(readonly=True) as conn:
        found = await outbox.notifications_for(conn, customer_id)
    return _json({"notifications": [{"notificationId": n.id, "channel": n.channel, "template": n.template,
                                     "payload": n.payload, "createdAt": isoformat(n.created_at)} for n in found]})


async def list_tickets(request: web.Request) -> web.Response:
    require_role(_principal(request), "operator")
    core = request.app[CORE_KEY]
    async with core.db.transaction(readonly=True) as conn:
        found = await outbox.tickets_for(conn, None)
    return _json({"tickets": [{"ticketId": t.id, "customerId": t.customer_id, "vin": t.vin,
                               "purchaseId": t.purchase_id, "subject": t.subject, "diagnostics": t.diagnostics,
                               "status": t.status, "createdAt": isoformat(t.created_at)} for t in found]})


async def receive_webhook(request: web.Request) -> web.Response:
    source = WEBHOOK_SOURCES.get(request.match_info["source"])
    if source is None:
        raise Problem(404, "Not Found", f"no webhook receiver at {request.path}")
    core = request.app[CORE_KEY]
    raw = await request.read()
    webhook_id, body = verify(raw, request.headers, core.settings.webhook_secret(source), now=time.time(),
                              tolerance=core.settings.webhook_tolerance)
    await webhooks.receive(core, source, webhook_id, body, request.headers.get("X-Correlation-Id"), raw)
    return web.Response(status=204)


# --- the admin protocol (contracts/admin.yaml) --------------------------------------
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; the queue's figures read from the store now."""
    require_admin(request)
    core = request.app[CORE_KEY]
    now = core.clock.now()
    pending, oldest_due = await inspect.job_queue(core.db, now)
    core.metrics.queue(pending, oldest_due, await inspect.unprocessed_webhooks(core.db), now)
    return web.Response(body=core.metrics.exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def health(request: web.Request) -> web.Response:
    require_admin(request)
    runner, core = request.app[RUNNER_KEY], request.app[CORE_KEY]
    # Due next: a job, or the deadline of a call waiting on a peer (a coordinator steps there).
    due = min((d for d in (await runner.next_due(), core.clock.next_due()) if d is not None), default=None)
    # Busy: passes over the queue and requests at work, this one aside; a call waiting on a
    # peer's answer is parked, not busy (DESIGN.md).
    busy = max(0, runner.busy + core.in_flight - 1 - core.clock.parked)
    return _json({"service": "core", "status": "ok", "clock": core.clock.describe(), "busy": busy,
                  "nextDue": isoformat(due) if due is not None else None,
                  "pendingTimers": await jobs.count(core.db)})


async def get_clock(request: web.Request) -> web.Response:
    require_admin(request)
    return _json(request.app[CORE_KEY].clock.describe())


async def move_clock(request: web.Request) -> web.Response:
    require_admin(request)
    await validation.check(request)  # ClockMove: exactly one of advance or to, within their formats
    core, runner = request.app[CORE_KEY], request.app[RUNNER_KEY]
    try:
        body = orjson.loads(await request.read())
        target = core.clock.now() + parse_duration(body["advance"]) if "advance" in body \
            else parse_instant(body["to"])
    except (ValueError, KeyError, TypeError) as exc:
        raise Problem(400, "Invalid clock move", f"expected {{'advance': '15m'}} or {{'to': <date-time>}} ({exc})")
    try:
        if not body.get("fire", True):  # a coordinator brings every clock here first (contracts/admin.yaml)
            core.clock.move_to(target, expire=False)
            return _json(core.clock.describe())
        if target < core.clock.now() or core.clock.mode == "real":
            core.clock.move_to(target)  # raises the clear error
        core.clock.expire_passed()  # deadlines a move without firing passed expire first
        await runner.advance_to(target)
    except ClockError as exc:
        raise Problem(409, "Clock cannot move", str(exc), kind="clock-conflict") from None
    return _json(core.clock.describe())


async def reset(request: web.Request) -> web.Response:
    require_admin(request)
    core, runner = request.app[CORE_KEY], request.app[RUNNER_KEY]
    async with quiesce.quiet(request.app[REQUESTS_KEY], runner, core.clock):  # nothing at work on the old world
        await drop_schema(core.db.engine)
        await create_schema(core.db.engine)
        await core.ids.carry_over(core.db)  # ids handed out before the reset are not handed out again
        await pruning.schedule(core)
    return _json({"reset": True, "service": "core"})

"""The admin protocol (contracts/admin.yaml) on every simulator.

Admin calls are the control plane: validated against their own contract, not
journaled, and never counted as busy (an advancing clock call must not keep
the system it advances from settling).
"""

from __future__ import annotations

import hmac

import orjson
from aiohttp import web

from .clock import MAX_TIME, ClockError, isoformat, parse_datetime
from .contract import Operation
from .contract import load as load_contract
from .durations import DurationTooLong, parse_duration
from .errors import ProblemError
from .faults import FaultConflict, FaultError
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .problems import from_error, problem
from .service import Service, is_loopback


def add_admin_routes(app: web.Application, service: Service) -> None:
    contract = load_contract("admin.yaml")
    handlers = _handlers(service)
    for op_id, op in contract.operations.items():
        app.router.add_route(op.method, op.path, _admin_endpoint(service, op, handlers[op_id]), name=op_id)


def _authorised(service: Service, request: web.Request) -> bool:
    """Without a token, loopback callers only; with one, whoever presents it."""
    if not service.admin_token:
        return is_loopback(request.remote)
    # surrogatepass: a header's undecodable bytes arrive as lone surrogates, which a plain
    # encode() refuses (a 500); encoded, they match no token.
    given = request.headers.get("Authorization", "").encode("utf-8", "surrogatepass")
    return hmac.compare_digest(given, f"Bearer {service.admin_token}".encode())


def _admin_endpoint(service: Service, op: Operation, handler):
    async def endpoint(request: web.Request) -> web.Response:
        if not _authorised(service, request):
            return problem(401, "Admin token required",
                           "admin routes answer loopback callers, or callers with `Authorization: Bearer <token>`",
                           kind="admin-unauthorised", headers={"WWW-Authenticate": "Bearer"})
        raw = await request.read() if op.body is not None else b""
        body, violations = op.check_request(request.match_info, request.query, request.headers, raw,
                                            request.content_type if raw else "")
        if violations:
            return problem(400, "Request violates contract", "; ".join(map(str, violations)),
                           kind="contract-violation", violations=[v.to_dict() for v in violations])
        try:
            answer = await handler(request, body)
        except ProblemError as exc:
            return from_error(exc)
        if isinstance(answer, web.Response):  # not JSON (the metrics)
            return answer
        status, payload = answer
        return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")

    return endpoint


def _handlers(service: Service) -> dict:
    clock, faults, journal = service.clock, service.faults, service.journal

    async def get_health(request, body):
        return 200, service.health()

    async def get_clock(request, body):
        return 200, clock.describe()

    async def move_clock(request, body):
        try:
            if "advance" in body:
                target = clock.now() + parse_duration(body["advance"])
            else:
                target = parse_datetime(body["to"])
        except DurationTooLong as exc:  # as valid as any duration: past the clock's range (409)
            raise ProblemError(409, "Clock cannot move", f"cannot move the clock past {isoformat(MAX_TIME)}: {exc}",
                               kind="clock-conflict") from None
        except ValueError as exc:
            raise ProblemError(400, "Invalid clock move", str(exc)) from None
        try:
            if body.get("fire", True):
                await clock.advance_to(target)
            else:  # a coordinator brings every clock here first (contracts/admin.yaml)
                clock.jump_to(target)
        except ClockError as exc:
            raise ProblemError(409, "Clock cannot move", str(exc), kind="clock-conflict") from None
        return 200, clock.describe()

    async def get_metrics(request, body):
        return web.Response(body=service.metrics.exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def reset(request, body):
        await service.reset(keep_configuration=bool((body or {}).get("keepConfiguration", False)))
        return 200, {"reset": True, "service": service.name}

    async def list_faults(request, body):
        return 200, {"rules": [r.to_dict() for r in faults.rules],
                     "actions": [spec.describe() for spec in faults.specs.values()]}

    async def add_faults(request, body):
        raws = body["rules"] if isinstance(body, dict) and "rules" in body and "action" not in body else [body]
        try:
            added = faults.add_many(raws)
        except FaultConflict as exc:
            raise ProblemError(409, "Fault rule exists", str(exc), kind="fault-exists") from None
        except FaultError as exc:
            raise ProblemError(400, "Invalid fault rule", str(exc), kind="invalid-fault") from None
        return 201, {"rules": [r.to_dict() for r in added]}

    async def clear_faults(request, body):
        return 200, {"removed": faults.clear()}

    async def delete_fault(request, body):
        removed = faults.remove(request.match_info["ruleId"])
        if not removed:
            raise ProblemError(404, "No such fault rule", f"no rule with id {request.match_info['ruleId']!r}")
        return 200, {"removed": removed}

    async def read_journal(request, body):
        since = int(request.query.get("since", 0))
        limit = int(request.query.get("limit", 1000))
        return 200, journal.read(since, limit)

    async def clear_journal(request, body):
        return 200, {"removed": journal.clear()}

    async def get_webhooks(request, body):
        return 200, {"subscriptions": [s.to_dict() for s in service.webhooks.subscriptions]}

    async def set_webhooks(request, body):
        known = set(service.contract.webhooks) | {"*"}
        subs = body["subscriptions"]
        for sub in subs:
            if sub["event"] not in known and not any(c in sub["event"] for c in "*?["):
                raise ProblemError(400, "Unknown webhook event",
                                   f"{sub['event']!r} is not a webhook of {service.name}; known: {sorted(known)}")
        try:
            service.webhooks.replace([(sub["event"], sub["url"], sub["secret"]) for sub in subs])
        except (ValueError, TypeError, RuntimeError) as exc:  # binascii.Error is a ValueError
            raise ProblemError(400, "Invalid webhook secret", str(exc)) from None
        return 200, {"subscriptions": [s.to_dict() for s in service.webhooks.subscriptions]}

    return {
        "getHealth": get_health, "getMetrics": get_metrics, "getClock": get_clock, "moveClock": move_clock, "reset": reset,
        "listFaults": list_faults, "addFaults": add_faults, "clearFaults": clear_faults,
        "deleteFault": delete_fault, "readJournal": read_journal, "clearJournal": clear_journal,
        "getWebhooks": get_webhooks, "setWebhooks": set_webhooks,
    }




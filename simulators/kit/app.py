"""The app factory: a simulator is a contract, a model and a few handlers.

``build_app`` registers one route per contract operation of a ``Service``,
each wrapped so that the request is validated, faults applied, idempotency
honoured, the response validated and the exchange journaled. Handlers
receive a ``Call`` and return a ``Reply``: no HTTP in the model.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from caas_sim.logs import CORRELATION

from .admin import add_admin_routes
from .contract import Contract, Operation
from .entities import ENTITY_SOURCE, entity_source
from .entities import entities as request_entities
from .errors import ProblemError, ResetWhileHeld
from .faults import TRANSPORT_ACTIONS, FaultRule
from .heap import freeze_after_start
from .journal import CORRELATION_HEADER
from .problems import answer_unparsable_requests, from_error, problem
from .service import Service

log = logging.getLogger("caas.simulators")

SERVICE_KEY: web.AppKey[Service] = web.AppKey("service")
#: Largest request body any simulator accepts.
MAX_BODY = 1024 * 1024


@dataclass(slots=True)
class Call:
    """What a handler sees of a request: validated input and its context."""
    body: Any
    path: dict[str, str]
    query: Any
    headers: Any
    correlation_id: str
    operation: str
    _found: dict[str, str] | None = None

    @property
    def entities(self) -> dict[str, str]:
        """What fault selectors can name of this request (worked out when first asked)."""
        if self._found is None:
            self._found = request_entities(self.path, self.body)
        return self._found


@dataclass(slots=True)
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Call], Awaitable[Reply]]


def build_app(service: Service, handlers: dict[str, Handler], *, admin: bool = True,
              also: Sequence[tuple[Contract, dict[str, Handler]]] = (),
              extra_routes: Callable[[web.Application], None] | None = None) -> web.Application:
    """One route per operation of ``service.contract`` and of each ``(contract, handlers)`` in
    ``also`` (a second API on the same server, e.g. VSS's workshop API); ``extra_routes`` adds
    a simulator's own routes before the fallback that answers 404/405."""
    app = web.Application(client_max_size=MAX_BODY)
    app[SERVICE_KEY] = service
    answer_unparsable_requests(app)
    for contract, served in ((service.contract, handlers), *also):
        missing = set(contract.operations) - set(served)
        extra = set(served) - set(contract.operations)
        if missing or extra:
            raise ValueError(f"{service.name}: handlers and {contract.name} disagree; "
                             f"no handler for {sorted(missing)}, not in contract {sorted(extra)}")
        for op_id, op in contract.operations.items():
            app.router.add_route(op.method, op.path, _endpoint(service, op, served[op_id]), name=op_id)
        _concrete_paths_first(app, contract)
    if admin:
        add_admin_routes(app, service)
    if extra_routes is not None:
        extra_routes(app)
    # Last: whatever no operation matched. A route, not a middleware: aiohttp's
    # middlewares cost every request a noticeable share of its throughput.
    app.router.add_route("*", "/{tail:.*}", no_route)

    async def close(_: web.Application) -> None:
        await service.webhooks.close()
        service.journal.close()

    app.on_cleanup.append(close)
    freeze_after_start(app)
    return app


def _concrete_paths_first(app: web.Application, contract: Contract) -> None:
    """OpenAPI matches a concrete path before a templated one: GET /payments/initiate is 405
    (Allow: POST), not getPayment with paymentId "initiate". aiohttp would try every resource
    matching the path; these routes stop it. Only wrong methods reach them."""
    methods: dict[str, set[str]] = {}
    for op in contract.operations.values():
        if "{" not in op.path:
            methods.setdefault(op.path, set()).add(op.method)
    for path, allowed in methods.items():
        allow = ", ".join(sorted(allowed))

        async def not_allowed(request: web.Request, allow: str = allow) -> web.Response:
            return problem(405, "Method Not Allowed", f"{request.method} is not allowed on {request.path}",
                           headers={"Allow": allow})

        app.router.add_route("*", path, not_allowed)


async def allowed_methods(request: web.Request) -> list[str]:
    """The methods the operations at this path declare (catch-all routes left out)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        _, methods = await resource.resolve(request)
        if "*" not in methods:
            allowed |= methods
    return sorted(allowed)


async def no_route(request: web.Request) -> web.Response:
    """What aiohttp would answer in text/plain (404, 405 with Allow), as problem+json."""
    allowed = await allowed_methods(request)
    if allowed:
        return problem(405, "Method Not Allowed", f"{request.method} is not allowed on {request.path}",
                       headers={"Allow": ", ".join(allowed)})
    return problem(404, "Not Found", f"no operation at {request.path}")


def correlation_id(request: web.Request, ids: Iterator[int], service: str) -> str:
    """The caller's id when it is safe to echo back in a header; a new one otherwise."""
    given = request.headers.get(CORRELATION_HEADER)
    if given and len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return f"{service}-{next(ids):08x}"  # deterministic, unlike a uuid4


def _endpoint(service: Service, op: Operation, handler: Handler):
    # Everything a request reads that does not change is bound here, once: the endpoint
    # runs on every request, and each attribute or global looked up there costs it.
    clock, journal, faults, owner = service.clock, service.journal, service.faults, service.name
    ids = service.correlation_ids
    wants_body = op.body is not None
    check_request, idempotent = op.check_request, op.idempotent
    method, op_id, template = op.method, op.id, op.path
    append, enter, leave = journal.append, clock.enter, clock.leave
    set_correlation, perf_counter = CORRELATION.set, time.perf_counter

    async def endpoint(request: web.Request) -> web.StreamResponse:
        started = perf_counter()
        headers = request.headers
        cid = correlation_id(request, ids, owner)
        set_correlation(cid)  # on every line logged while it is handled
        busy = enter(owner)
        try:
            try:
                raw = await request.read() if wants_body else b""
            except web.HTTPRequestEntityTooLarge:
                return problem(413, "Request body too large", f"the limit is {MAX_BODY} bytes")
            if raw:  # aiohttp's parsed media type; the usual header is its own parse
                content_type = headers.get("Content-Type")
                if content_type != "application/json":
                    content_type = request.content_type
            else:
                content_type = ""
            path_params = request.match_info
            body, violations = check_request(path_params, request.query, headers, raw, content_type)
            path = request.path
            exchange = {"method": method, "path": path, "operation": op_id, "correlationId": cid}
            if violations:
                entities = request_entities(path_params, body)
                if entities:
                    exchange["entities"] = entities
                detail = "; ".join(str(v) for v in violations)
                append("violation", "in", {**exchange, "violation": detail})
                response = problem(400, "Request violates contract", detail, kind="contract-violation",
                                   violations=[v.to_dict() for v in violations])
                response.headers[CORRELATION_HEADER] = cid
            else:
                call = Call(body, dict(path_params), request.query, headers, cid, op_id)
                if faults.has_transport_rules:
                    rule = faults.take(TRANSPORT_ACTIONS, method=method, path=path, template=template,
                                       operation=op_id, entities=call.entities, correlation_id=cid)
                    if call.entities:
                        exchange["entities"] = call.entities
                else:
                    # The journal works them out when read: most entries never are.
                    rule = None
                    exchange[ENTITY_SOURCE] = entity_source(call.path, raw, body)
                if rule is not None:
                    exchange["ruleId"] = rule.id
                try:
                    if rule is None and not (idempotent and "Idempotency-Key" in headers):
                        # the common case, kept flat: _run without its own coroutine
                        try:
                            reply = await handler(call)
                        except ProblemError as exc:
                            response = _from_problem(service, op, call, exc)
                        else:
                            response = _from_reply(service, op, call, reply)
                    else:
                        response = await _apply(service, op, handler, call, rule, request, raw)
                        response.headers[CORRELATION_HEADER] = cid
                except _Dropped:
                    exchange["latencyMs"] = round((perf_counter() - started) * 1000, 3)
                    append("request", "in", {**exchange, "detail": {"outcome": "connection dropped"}})
                    raise asyncio.CancelledError from None  # aiohttp closes the request quietly
                except ResetWhileHeld as exc:
                    # Not journaled: the journal is the world after the reset's, and this
                    # request was never part of it.
                    log.info("%s %s: connection dropped (%s)", method, path, exc)
                    _reset_connection(request)
                    raise asyncio.CancelledError from None
            exchange["status"] = response.status
            exchange["latencyMs"] = round((perf_counter() - started) * 1000, 3)
            append("request", "in", exchange)
            return response
        finally:
            leave(owner, busy)

    return endpoint


async def _apply(service: Service, op: Operation, handler: Handler, call: Call, rule: FaultRule | None,
                 request: web.Request, raw: bytes) -> web.StreamResponse:
    """Run the handler inside the transport fault (if any) and idempotency."""
    action = rule.action if rule else None
    phase = rule.params.get("phase") if rule else None  # http_error, timeout, reset
    if action == "latency":
        jitter = rule.rng.uniform(0, rule.params.get("jitter_ms", 0))
        await service.hold((rule.params["ms"] + jitter) / 1000)
    elif phase == "before":
        return await _transport_fault(service, rule, request)
    response = await _idempotent(service, op, handler, call, request, raw)
    if action == "malformed_body":
        text = response.body if isinstance(response.body, bytes) else b"{}"
        return web.Response(status=response.status, body=text[: max(1, len(text) // 2)] + b'{"',
                            content_type="application/json")
    if phase == "after":
        return await _transport_fault(service, rule, request)
    return response


async def _transport_fault(service: Service, rule: FaultRule, request: web.Request) -> web.StreamResponse:
    params = rule.params
    if rule.action == "http_error":
        retry = params.get("retry_after")
        return problem(params["status"], "Injected fault", f"fault rule {rule.id} answered {params['status']}",
                       kind="injected-fault", ruleId=rule.id,
                       headers={"Retry-After": str(int(retry))} if retry is not None else None)
    if rule.action == "timeout":
        await service.hold(params["seconds"])
    _reset_connection(request)
    raise _Dropped


class _Dropped(Exception):
    """The connection was reset on purpose: there is no response to send."""


def _reset_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:  # linger 0: close sends RST, as a crashing peer would
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


async def _idempotent(service: Service, op: Operation, handler: Handler, call: Call, request: web.Request,
                      raw: bytes) -> web.Response:
    key = call.headers.get("Idempotency-Key") if op.idempotent else None
    if key is None:
        return await _run(service, op, handler, call)
    store = service.idempotency
    state, entry = store.begin(op.id, key, store.fingerprint(op.method, request.path, raw))
    if state == "replay":
        headers = {"Idempotent-Replayed": "true"}
        if entry.location is not None:
            headers["Location"] = entry.location
        return web.Response(status=entry.status, body=entry.body, content_type=entry.content_type, headers=headers)
    if state == "conflict":
        return problem(409, "Request in progress", f"a request with Idempotency-Key {key!r} is still being processed",
                       kind="idempotency-in-flight")
    if state == "mismatch":
        return problem(422, "Idempotency key reused",
                       f"Idempotency-Key {key!r} was first used with a different request body", kind="idempotency-mismatch")
    try:
        response = await _run(service, op, handler, call)
    except BaseException:
        store.abandon(op.id, key)
        raise
    if response.status >= 500 or response.status == 429:
        store.abandon(op.id, key)  # worth retrying, not replaying
    else:
        body = response.body
        if isinstance(body, bytes):
            body = bytes(memoryview(body))  # its own size: see kit/packed.py
        store.complete(op.id, key, response.status, body, response.content_type, response.headers.get("Location"))
    return response


async def _run(service: Service, op: Operation, handler: Handler, call: Call) -> web.Response:
    """The handler's answer, checked against the contract, with the correlation header."""
    try:
        reply = await handler(call)
    except ProblemError as exc:
        return _from_problem(service, op, call, exc)
    return _from_reply(service, op, call, reply)


def _from_problem(service: Service, op: Operation, call: Call, exc: ProblemError) -> web.Response:
    response = from_error(exc)
    _check_response(service, op, call, exc.status, orjson.loads(response.body))
    response.headers[CORRELATION_HEADER] = call.correlation_id
    return response


def _from_reply(service: Service, op: Operation, call: Call, reply: Reply) -> web.Response:
    _check_response(service, op, call, reply.status, reply.body)
    # The headers in their final order (the handler's, Content-Type, X-Correlation-Id) in
    # one dict: aiohttp copies it once instead of adding each afterwards.
    if reply.body is None:
        return web.Response(status=reply.status, headers={**reply.headers, CORRELATION_HEADER: call.correlation_id})
    return web.Response(status=reply.status, body=orjson.dumps(reply.body),
                        headers={**reply.headers, "Content-Type": "application/json",
                                 CORRELATION_HEADER: call.correlation_id})


def _check_response(service: Service, op: Operation, call: Call, status: int, body: Any) -> None:
    violations = op.check_response(status, body)
    if violations:
        service.journal.record("violation", "out", operation=op.id, status=status, correlationId=call.correlation_id,
                               violation="; ".join(str(v) for v in violations), entities=call.entities or None)

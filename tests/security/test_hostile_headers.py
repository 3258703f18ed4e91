"""Header values are untrusted bytes: invalid UTF-8, text that is not ASCII, control
characters and oversize values get a 4xx problem+json on every route of the core and of
every simulator, never a 500 (DESIGN.md, "Untrusted bytes").

Generated, so that a new operation or header is covered without touching this file: the
operations from the contracts (the core's from contracts/core.yaml, each simulator's from
the routes its app names after contract operations, admin ones included), the headers from
each operation's header parameters, plus those the code reads outside the contracts
(Authorization, Content-Type, X-Correlation-Id) and one that no route reads (Accept).
Admin routes are called with the admin token, on an address off loopback when this machine
has one. aiohttp's client refuses such values: requests are written on a raw socket.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from caas_sim import catalogue
from caas_sim.scenarios.stack import SERVICES
from caas_sim.simulators.kit.contract import CONTRACTS_DIR, Contract
from tests.security.live import ADMIN_TOKEN, KEYS, WEBHOOK_SECRET, LiveCore
from tests.security.test_admin_and_limits import OFF_LOOPBACK

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.security.test_hostile_headers")

SIMULATORS = list(SERVICES)
CORE = Contract("core.yaml")
THEIRS = [Contract(path) for path in sorted(CONTRACTS_DIR.glob("*.yaml")) if path.name != "core.yaml"]
#: What a hostile value follows in these headers, so that only the hostile part is wrong.
PREFIX = {"authorization": b"Bearer ", "webhook-id": b"msg_", "webhook-signature": b"v1,"}
HOSTILE = {
    "invalid UTF-8": b"\xff\xfe",
    "UTF-8, not ASCII": "é".encode(),
    "NUL": b"a\x00b",
    "DEL": b"\x7f",
    "escape": b"a\x1bb",
    "10 KB": b"x" * 10240,
}
#: Values aiohttp's parser lets through: the services answer them, naming the header.
DECODED = {"invalid UTF-8", "UTF-8, not ASCII"}


@dataclass(frozen=True)
class Target:
    service: str
    operation: str
    method: str
    path: str
    base: Callable[[bytes], dict[str, bytes]]  # the headers of an otherwise acceptable request
    body: bytes
    headers: dict[str, int | None]  # what the route reads -> the longest value its contract allows
    refused_anyway: bool = False  # 4xx whatever the headers say: the answer need not name one


def raw_request(url: str, method: str, path: str, headers: dict[str, bytes], body: bytes) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 exchange on a connection of its own: (status, headers, body)."""
    where = urlsplit(url)
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: {where.netloc}".encode(), b"Connection: close",
             f"Content-Length: {len(body)}".encode(), *(k.encode() + b": " + v for k, v in headers.items())]
    answer = b""
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:  # a refused request may be reset once answered
            pass
    head, _, content = answer.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    return int(status_line.split()[1]), {k.strip().lower(): v.strip() for k, _, v in
                                         (f.partition(":") for f in fields)}, content


def declared_headers(contract: Contract, method: str, template: str) -> dict[str, int | None]:
    item = contract.doc["paths"][template]
    params = [contract._resolve(p) for p in [*item.get("parameters", []), *item[method.lower()].get("parameters", [])]]
    return {p["name"]: contract._deref(p.get("schema", {})).get("maxLength") for p in params if p["in"] == "header"}


def concrete(template: str) -> str:
    return template.replace("{", "").replace("}", "")  # {vin} -> vin: any value, the headers are refused first


def _admin(path: str) -> bool:
    """The admin protocol's routes (and the metrics, guarded as they are)."""
    return path.startswith("/__admin/") or path == "/metrics"


def bearer(token: str) -> Callable[[bytes], dict[str, bytes]]:
    return lambda body: {"Authorization": f"Bearer {token}".encode()}


def signed(body: bytes) -> dict[str, bytes]:
    webhook_id, now = f"msg_{uuid.uuid4().hex}", datetime.fromtimestamp(int(time.time()), tz=UTC)
    return {"webhook-id": webhook_id.encode(), "webhook-timestamp": str(int(now.timestamp())).encode(),
            "webhook-signature": Webhook(WEBHOOK_SECRET).sign(webhook_id, now, body.decode()).encode()}


def core_targets() -> Iterator[Target]:
    for op in CORE.operations.values():
        headers = {"X-Correlation-Id": None, "Accept": None, **declared_headers(CORE, op.method, op.path)}
        if op.path.startswith("/caas/webhooks/"):
            base = signed
        else:
            base = bearer(ADMIN_TOKEN if _admin(op.path) else "key-ops-s3cr3t")
            headers["Authorization"] = None
        if op.body is not None:
            headers["Content-Type"] = None
        yield Target("core", op.id, op.method, concrete(op.path), base, b"{}" if op.body is not None else b"",
                     headers)


def simulator_targets(name: str, app) -> Iterator[Target]:
    named = app.router.named_resources()  # the kit names each route after its operation
    for contract in THEIRS:
        for op in contract.operations.values():
            if op.id not in named or named[op.id].canonical != op.path:
                continue
            headers = {"X-Correlation-Id": None, "Accept": None, **declared_headers(contract, op.method, op.path)}
            base = bearer(ADMIN_TOKEN) if _admin(op.path) else (lambda body: {})
            if _admin(op.path):
                headers["Authorization"] = None
            if op.body is not None:
                headers["Content-Type"] = None
            yield Target(name, op.id, op.method, concrete(op.path), base, b"{}" if op.body is not None else b"",
                         headers)
    if name == "vss":  # its own route refusing writes under /vehicles reads the correlation id
        yield Target(name, "read-only guard", "POST", "/vehicles/vin/maintenance-status", lambda body: {}, b"",
                     {"X-Correlation-Id": None, "Accept": None}, refused_anyway=True)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    try:  # off loopback, as a shared deployment binds (admin routes then need the token)
        socket.create_server((OFF_LOOPBACK, 0)).close()
        host = OFF_LOOPBACK
    except OSError:  # the token is checked the same way on loopback
        host = "127.0.0.1"
    db = tmp_path_factory.mktemp("core") / "core.db"
    live = LiveCore(services=SIMULATORS, seed=0, with_sink=False, admin_token=ADMIN_TOKEN,
                    core={"database_url": f"sqlite+aiosqlite:///{db}", "api_keys": KEYS, "admin_token": ADMIN_TOKEN,
                          "webhook_secrets": dict.fromkeys(catalogue.WEBHOOK_SENDERS, WEBHOOK_SECRET)})
    live.stack.host = host
    server_log = logging.getLogger("aiohttp.server")  # a traceback for every request it cannot parse
    level = server_log.level
    server_log.setLevel(logging.CRITICAL)
    try:
        with live:
            yield live
    finally:
        server_log.setLevel(level)


def test_the_generated_cases_cover_every_header_and_route_kind():
    targets = list(core_targets())
    assert {t.operation for t in targets} == set(CORE.operations)
    read = {h.lower() for t in targets for h in t.headers}
    assert {"authorization", "content-type", "x-correlation-id", "idempotency-key", "webhook-id",
            "webhook-timestamp", "webhook-signature"} <= read


@pytest.mark.parametrize("service", ["core", *SIMULATORS])
def test_hostile_header_values_get_a_4xx_problem(live, service):
    url = live.stack.url(service)
    if service == "core":
        targets = list(core_targets())
    else:
        targets = list(simulator_targets(service, live.stack.running[service].app))
        assert {t.operation for t in targets} >= {"getHealth", "moveClock", "setWebhooks"}, "admin routes missing"
        assert any(not _admin(t.path) for t in targets), "no API operation found"
    failures, sent = [], 0
    for target in targets:
        for header, limit in target.headers.items():
            values = dict(HOSTILE)
            if limit is not None:
                values["longer than the contract allows"] = b"x" * (limit + 1 - len(PREFIX.get(header.lower(), b"")))
            for case, value in values.items():
                base = {"Content-Type": b"application/json"} if target.body else {}
                base |= target.base(target.body)
                headers = {k: v for k, v in base.items() if k.lower() != header.lower()}
                headers[header] = PREFIX.get(header.lower(), b"") + value
                status, answer, content = raw_request(url, target.method, target.path, headers, target.body)
                sent += 1
                where = f"{target.operation} {header} {case}: {status}"
                if not 400 <= status < 500:
                    failures.append(f"{where} {content[:120]!r}")
                elif not answer.get("content-type", "").startswith("application/problem+json"):
                    failures.append(f"{where} {answer.get('content-type')} {content[:120]!r}")
                elif orjson.loads(content).get("status") != status:
                    failures.append(f"{where} problem says {content[:120]!r}")
                elif (case in DECODED | {"longer than the contract allows"} and not target.refused_anyway
                      and header.lower() not in content.decode().lower()):
                    failures.append(f"{where} does not name the header: {content[:200]!r}")
    assert not failures, f"{len(failures)} of {sent}:\n" + "\n".join(failures[:40])
    # still serving, and the admin token still opens the admin routes
    status, _, content = raw_request(url, "GET", "/__admin/health", {"Authorization": f"Bearer {ADMIN_TOKEN}".encode()},
                                     b"")
    assert status == 200, content

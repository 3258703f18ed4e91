"""Typed clients of the admin protocol (contracts/admin.yaml): answers and requests as the
models of ``caas_sim.simulators.admin_models``.

- ``AsyncAdmin``: async, on the dict client (``caas_sim.simulators.client.AdminClient``);
- ``Admin``: the same answers for synchronous code, on urllib (no new dependency).

Non-2xx answers raise ``AdminProblem`` (an ``AdminError`` with the problem as a model); a
service that cannot be reached raises ``AdminUnreachable``.
"""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Self, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from pydantic import ValidationError

from .admin_models import (
    AuditReport,
    ClockState,
    FaultList,
    FaultRule,
    FaultRuleInput,
    FaultRules,
    Health,
    JournalEntry,
    JournalPage,
    Problem,
    Removed,
    ResetResult,
    Subscription,
    SubscriptionInput,
    Subscriptions,
)

T = TypeVar("T")
from .client import (
    DEFAULT_TIMEOUT,
    MOVE_TIMEOUT,
    AdminClient,
    AdminError,
    AdminUnreachable,
    answer_of,
    duration_value,
)

# --- the typed clients --------------------------------------------------------------------
#
# ``AsyncAdmin`` and ``Admin`` answer with the models of ``caas_sim.simulators.admin_models`` (checked
# against contracts/admin.yaml by tests/test_admin_models.py). Each operation is described
# once (``_Ops``) and run by either transport: aiohttp (through an ``AdminClient``, whose
# dict answers stay what the harness reads) or the standard library's urllib.


class AdminProblem(AdminError):
    """An ``AdminError`` from a typed client: ``model`` is its problem+json as a ``Problem``,
    and the message lists the contract violations a 400 names."""

    @property
    def model(self) -> Problem | None:
        try:
            return Problem.model_validate(self.problem)
        except ValidationError:
            return None

    def __str__(self) -> str:
        text = super().__str__()
        violations = self.problem.get("violations")
        if isinstance(violations, list):
            parts = [f"{v.get('location', '?')} {v.get('pointer', '')}: {v.get('message', '')}"
                     for v in violations if isinstance(v, dict)]
            parts = [part for part in parts if part not in text]  # a detail may say them already
            if parts:
                text += " (" + "; ".join(parts) + ")"
        return text


@dataclass(frozen=True, slots=True)
class _Op(Generic[T]):
    """One admin call: what to send, and how to read the answer."""
    method: str
    path: str
    parse: Callable[[dict], T]
    json: Any = None
    params: dict | None = None
    move: bool = False  # a clock move: answers once everything on the way settled (no total timeout)


def _rule_json(rule: FaultRuleInput | Mapping[str, Any]) -> dict:
    """A rule's body, checked against the contract's ``FaultRuleInput`` here first."""
    model = rule if isinstance(rule, FaultRuleInput) else FaultRuleInput.model_validate(rule)
    return model.to_json()


def _subscription_json(sub: SubscriptionInput | Mapping[str, Any]) -> dict:
    model = sub if isinstance(sub, SubscriptionInput) else SubscriptionInput.model_validate(sub)
    return model.to_json()


def _instant_text(when: str | datetime) -> str:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError(f"{when!r} has no timezone: the admin protocol's instants are absolute")
        return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return when


class _Ops:
    """The admin protocol's operations (contracts/admin.yaml), transport aside."""

    @staticmethod
    def health() -> _Op[Health]:
        return _Op("GET", "/__admin/health", Health.model_validate)

    @staticmethod
    def clock() -> _Op[ClockState]:
        return _Op("GET", "/__admin/clock", ClockState.model_validate)

    @staticmethod
    def advance(duration: str | float) -> _Op[ClockState]:
        return _Op("POST", "/__admin/clock", ClockState.model_validate, {"advance": duration_value(duration)},
                   move=True)

    @staticmethod
    def set_clock(to: str | datetime, fire: bool) -> _Op[ClockState]:
        body = {"to": _instant_text(to)} if fire else {"to": _instant_text(to), "fire": False}
        return _Op("POST", "/__admin/clock", ClockState.model_validate, body, move=True)

    @staticmethod
    def reset(keep_configuration: bool) -> _Op[ResetResult]:
        return _Op("POST", "/__admin/reset", ResetResult.model_validate,
                   {"keepConfiguration": True} if keep_configuration else None)

    @staticmethod
    def audit() -> _Op[AuditReport]:
        return _Op("GET", "/__admin/audit", AuditReport.model_validate)

    @staticmethod
    def faults() -> _Op[FaultList]:
        return _Op("GET", "/__admin/faults", FaultList.model_validate)

    @staticmethod
    def add_faults(rules: list[dict]) -> _Op[list[FaultRule]]:
        body = rules[0] if len(rules) == 1 else {"rules": rules}
        return _Op("POST", "/__admin/faults", lambda answer: FaultRules.model_validate(answer).rules, body)

    @staticmethod
    def clear_faults() -> _Op[int]:
        return _Op("DELETE", "/__admin/faults", lambda answer: Removed.model_validate(answer).removed)

    @staticmethod
    def delete_fault(rule_id: str) -> _Op[int]:
        return _Op("DELETE", f"/__admin/faults/{quote(str(rule_id), safe='')}",
                   lambda answer: Removed.model_validate(answer).removed)

    @staticmethod
    def journal(since: int, limit: int) -> _Op[JournalPage]:
        return _Op("GET", "/__admin/journal", JournalPage.model_validate, params={"since": since, "limit": limit})

    @staticmethod
    def clear_journal() -> _Op[int]:
        return _Op("DELETE", "/__admin/journal", lambda answer: Removed.model_validate(answer).removed)

    @staticmethod
    def webhooks() -> _Op[list[Subscription]]:
        return _Op("GET", "/__admin/webhooks", lambda answer: Subscriptions.model_validate(answer).subscriptions)

    @staticmethod
    def set_webhooks(subscriptions: list[dict]) -> _Op[list[Subscription]]:
        return _Op("PUT", "/__admin/webhooks", lambda answer: Subscriptions.model_validate(answer).subscriptions,
                   {"subscriptions": subscriptions})


class AsyncAdmin:
    """The admin protocol with typed answers: ``async with AsyncAdmin(url) as admin:
    (await admin.health()).clock.now``. Errors are ``AdminProblem`` (an ``AdminError``) and
    ``AdminUnreachable``, as with ``AdminClient``; ``raw`` is the dict-answering client
    underneath (one session for both). A ``session`` passed in is used and left open."""

    def __init__(self, base_url: str, *, token: str | None = None,
                 session: aiohttp.ClientSession | None = None, timeout: float | None = DEFAULT_TIMEOUT):
        self.raw = AdminClient(base_url, token=token, session=session, timeout=timeout)
        self.raw._error = AdminProblem
        self.base_url = self.raw.base_url

    async def __aenter__(self) -> Self:
        await self.raw.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.raw.close()

    async def _run(self, op: _Op[T]) -> T:
        answer = await self.raw._call(op.method, op.path, json=op.json, params=op.params,
                                      timeout=MOVE_TIMEOUT if op.move else None)
        return op.parse(answer)

    async def health(self) -> Health:
        return await self._run(_Ops.health())

    async def clock(self) -> ClockState:
        return await self._run(_Ops.clock())

    async def advance(self, duration: str | float) -> ClockState:
        """Forward by ``"15m"``, ``"1h30m"``, ``90`` (seconds)...: the clock once all on the way settled."""
        return await self._run(_Ops.advance(duration))

    async def set_clock(self, to: str | datetime, *, fire: bool = True) -> ClockState:
        """Forward to an instant (never backward: 409); ``fire=False`` fires nothing due yet."""
        return await self._run(_Ops.set_clock(to, fire))

    async def reset(self, *, keep_configuration: bool = False) -> ResetResult:
        return await self._run(_Ops.reset(keep_configuration))

    async def audit(self) -> AuditReport:
        """A core's invariant audit (``GET /__admin/audit``, contracts/core.yaml)."""
        return await self._run(_Ops.audit())

    async def faults(self) -> FaultList:
        return await self._run(_Ops.faults())

    async def add_fault(self, rule: FaultRuleInput | Mapping[str, Any]) -> FaultRule:
        """Add one rule (a model or its dict); returns it as the service holds it."""
        return (await self._run(_Ops.add_faults([_rule_json(rule)])))[0]

    async def add_faults(self, rules: Iterable[FaultRuleInput | Mapping[str, Any]]) -> list[FaultRule]:
        """A batch, all or nothing."""
        bodies = [_rule_json(rule) for rule in rules]
        return await self._run(_Ops.add_faults(bodies)) if bodies else []

    async def clear_faults(self) -> int:
        return await self._run(_Ops.clear_faults())

    async def delete_fault(self, rule_id: str) -> int:
        return await self._run(_Ops.delete_fault(rule_id))

    async def journal(self, since: int = 0, limit: int = 1000) -> JournalPage:
        """One page: pass its ``next`` as ``since`` to read on."""
        return await self._run(_Ops.journal(since, limit))

    async def journal_entries(self, since: int = 0) -> list[JournalEntry]:
        """Every entry after ``since``, page by page."""
        entries: list[JournalEntry] = []
        while True:
            page = await self.journal(since, _PAGE)
            entries += page.entries
            if len(page.entries) < _PAGE:
                return entries
            since = page.next

    async def clear_journal(self) -> int:
        return await self._run(_Ops.clear_journal())

    async def webhooks(self) -> list[Subscription]:
        return await self._run(_Ops.webhooks())

    async def set_webhooks(self, subscriptions: Iterable[SubscriptionInput | Mapping[str, Any]]) -> list[Subscription]:
        """Replace every subscription; returns those in force (secrets never come back)."""
        return await self._run(_Ops.set_webhooks([_subscription_json(s) for s in subscriptions]))


class Admin:
    """``AsyncAdmin`` for synchronous code (a test, a script), on the standard library's
    urllib: ``Admin("http://127.0.0.1:8103").health().busy``. Each call is one request of its
    own (no session to close); environment proxies are not used (the services are local)."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float | None = DEFAULT_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self._headers = {"Accept": "application/json, application/problem+json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _run(self, op: _Op[T]) -> T:
        url = self.base_url + op.path + (f"?{urlencode(op.params)}" if op.params else "")
        data = None if op.json is None else orjson.dumps(op.json)
        headers = self._headers if data is None else {**self._headers, "Content-Type": "application/json"}
        request = urllib.request.Request(url, data=data, headers=headers, method=op.method)
        # A clock move answers once everything on the way settled: only the connection is bounded.
        timeout = (None if op.move else self._timeout) or socket.getdefaulttimeout()
        try:
            with self._opener.open(request, timeout=timeout) as resp:
                status, reason, ctype, raw = resp.status, resp.reason, resp.headers.get_content_type(), resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                status, reason, ctype, raw = exc.code, exc.reason, exc.headers.get_content_type(), exc.read()
        except urllib.error.URLError as exc:
            raise AdminUnreachable(self.base_url, _os_reason(exc.reason)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise AdminUnreachable(self.base_url, _os_reason(exc)) from None
        return op.parse(answer_of(op.method, url, status, reason, ctype, raw, AdminProblem))

    def health(self) -> Health:
        return self._run(_Ops.health())

    def clock(self) -> ClockState:
        return self._run(_Ops.clock())

    def advance(self, duration: str | float) -> ClockState:
        """Forward by ``"15m"``, ``"1h30m"``, ``90`` (seconds)...: the clock once all on the way settled."""
        return self._run(_Ops.advance(duration))

    def set_clock(self, to: str | datetime, *, fire: bool = True) -> ClockState:
        """Forward to an instant (never backward: 409); ``fire=False`` fires nothing due yet."""
        return self._run(_Ops.set_clock(to, fire))

    def reset(self, *, keep_configuration: bool = False) -> ResetResult:
        return self._run(_Ops.reset(keep_configuration))

    def audit(self) -> AuditReport:
        """A core's invariant audit (``GET /__admin/audit``, contracts/core.yaml)."""
        return self._run(_Ops.audit())

    def faults(self) -> FaultList:
        return self._run(_Ops.faults())

    def add_fault(self, rule: FaultRuleInput | Mapping[str, Any]) -> FaultRule:
        """Add one rule (a model or its dict); returns it as the service holds it."""
        return self._run(_Ops.add_faults([_rule_json(rule)]))[0]

    def add_faults(self, rules: Iterable[FaultRuleInput | Mapping[str, Any]]) -> list[FaultRule]:
        """A batch, all or nothing."""
        bodies = [_rule_json(rule) for rule in rules]
        return self._run(_Ops.add_faults(bodies)) if bodies else []

    def clear_faults(self) -> int:
        return self._run(_Ops.clear_faults())

    def delete_fault(self, rule_id: str) -> int:
        return self._run(_Ops.delete_fault(rule_id))

    def journal(self, since: int = 0, limit: int = 1000) -> JournalPage:
        """One page: pass its ``next`` as ``since`` to read on."""
        return self._run(_Ops.journal(since, limit))

    def journal_entries(self, since: int = 0) -> list[JournalEntry]:
        """Every entry after ``since``, page by page."""
        entries: list[JournalEntry] = []
        while True:
            page = self.journal(since, _PAGE)
            entries += page.entries
            if len(page.entries) < _PAGE:
                return entries
            since = page.next

    def clear_journal(self) -> int:
        return self._run(_Ops.clear_journal())

    def webhooks(self) -> list[Subscription]:
        return self._run(_Ops.webhooks())

    def set_webhooks(self, subscriptions: Iterable[SubscriptionInput | Mapping[str, Any]]) -> list[Subscription]:
        """Replace every subscription; returns those in force (secrets never come back)."""
        return self._run(_Ops.set_webhooks([_subscription_json(s) for s in subscriptions]))


#: Entries per journal read when reading it whole (the contract's maximum).
_PAGE = 10_000


def _os_reason(exc: BaseException | str) -> str:
    if isinstance(exc, str):
        return exc
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError)):
        return "the connection dropped"
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__

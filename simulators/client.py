"""The dict client of the admin protocol (contracts/admin.yaml); the typed ones are in
``caas_sim.simulators.typed_client``.

They speak only HTTP, so they drive any simulator or the core, in this process
or another one, without importing their code. Non-2xx answers raise
``AdminError`` carrying the problem+json body; a service that cannot be
reached at all raises ``AdminUnreachable`` (the usual "is it running?" case).

- ``AdminClient``: async, dict answers (what the harness reads);
- ``typed_client.AsyncAdmin``: async, typed answers (``caas_sim.simulators.admin_models``), on an
  ``AdminClient``; ``typed_client.Admin``: the same for synchronous code, on urllib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import quote

import aiohttp
import orjson
import yaml

T = TypeVar("T")

#: Ordinary admin calls answer at once; this only bounds a wedged service.
DEFAULT_TIMEOUT = 30.0
#: A clock move answers once every event on the way has fired and settled,
#: which may legitimately take long: only the connection is bounded.
MOVE_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)


class AdminError(Exception):
    """A non-2xx answer; ``problem`` is its RFC 9457 body (or a stand-in for a non-JSON one)."""

    def __init__(self, status: int, problem: dict[str, Any], url: str | None = None):
        super().__init__(status, problem)
        self.status = status
        self.problem = problem
        self.url = url

    @property
    def title(self) -> str:
        return str(self.problem.get("title") or f"HTTP {self.status}")

    @property
    def detail(self) -> str | None:
        detail = self.problem.get("detail")
        return str(detail) if detail else None

    def __str__(self) -> str:
        text = f"{self.status} {self.title}"
        return f"{text}: {self.detail}" if self.detail else text


class AdminUnreachable(ConnectionError):
    """Nothing answered at ``url`` (refused, timed out, or the connection dropped)."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class AdminClient:
    """``async with AdminClient("http://127.0.0.1:8103") as admin: await admin.health()``.

    A ``session`` passed in is used as is and left open; otherwise the client
    owns one for the duration of the ``async with``.
    """

    def __init__(self, base_url: str, *, token: str | None = None,
                 session: aiohttp.ClientSession | None = None, timeout: float | None = DEFAULT_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout or 10, 10))

    async def __aenter__(self) -> Self:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # --- health and clock ---------------------------------------------
    async def health(self) -> dict:
        return await self._call("GET", "/__admin/health")

    async def clock(self) -> dict:
        return await self._call("GET", "/__admin/clock")

    async def advance(self, duration: str | float) -> dict:
        """Move forward by ``15m``, ``1h30m``, ``90`` (seconds)...; returns the clock after the move."""
        return await self._call("POST", "/__admin/clock", json={"advance": duration_value(duration)},
                                timeout=MOVE_TIMEOUT)

    async def set_clock(self, to_iso: str, *, fire: bool = True) -> dict:
        """Move forward to an instant (never backward: that is a 409); ``fire=False`` fires
        nothing due on the way yet (admin protocol 1.1; a 1.0 service answers 400)."""
        body = {"to": to_iso} if fire else {"to": to_iso, "fire": False}
        return await self._call("POST", "/__admin/clock", json=body, timeout=MOVE_TIMEOUT)

    async def reset(self, *, keep_configuration: bool = False) -> dict:
        """Back to how the service started (webhook subscriptions included, unless kept)."""
        body = {"keepConfiguration": True} if keep_configuration else None
        return await self._call("POST", "/__admin/reset", json=body)

    async def audit(self) -> dict:
        """The core's invariant audit (``GET /__admin/audit``, contracts/core.yaml): cores only."""
        return await self._call("GET", "/__admin/audit")

    # --- faults -----------------------------------------------------------
    async def faults(self) -> dict:
        """``{"rules": [...], "actions": [...]}``: the rules in force and the actions the service knows."""
        return await self._call("GET", "/__admin/faults")

    async def add_fault(self, rule: dict) -> dict:
        """Add one rule; returns it as the service holds it (with its id)."""
        return (await self._call("POST", "/__admin/faults", json=rule))["rules"][0]

    async def add_faults(self, rules: list[dict]) -> list[dict]:
        """Add a batch, all or nothing; returns the rules added."""
        if not rules:  # the contract wants at least one rule in a batch
            return []
        return (await self._call("POST", "/__admin/faults", json={"rules": list(rules)}))["rules"]

    async def clear_faults(self) -> int:
        """Remove every rule; returns how many there were."""
        return (await self._call("DELETE", "/__admin/faults"))["removed"]

    async def delete_fault(self, rule_id: str) -> int:
        return (await self._call("DELETE", f"/__admin/faults/{quote(str(rule_id), safe='')}"))["removed"]

    # --- journal ----------------------------------------------------------
    async def journal(self, since: int = 0, limit: int = 1000) -> dict:
        """``{"entries": [...], "next": seq, "dropped": n}``; pass ``next`` as ``since`` to read on."""
        return await self._call("GET", "/__admin/journal", params={"since": since, "limit": limit})

    async def clear_journal(self) -> int:
        return (await self._call("DELETE", "/__admin/journal"))["removed"]

    # --- webhooks ---------------------------------------------------------
    async def webhooks(self) -> list[dict]:
        return (await self._call("GET", "/__admin/webhooks"))["subscriptions"]

    async def set_webhooks(self, subscriptions: list[dict]) -> list[dict]:
        """Replace every subscription (``event``, ``url``, ``secret``); returns those in force."""
        body = {"subscriptions": list(subscriptions)}
        return (await self._call("PUT", "/__admin/webhooks", json=body))["subscriptions"]

    # --- transport --------------------------------------------------------
    async def _call(self, method: str, path: str, *, json: Any = None, params: dict | None = None,
                    timeout: aiohttp.ClientTimeout | None = None) -> Any:
        if self._session is None:
            raise RuntimeError("use AdminClient as `async with AdminClient(...) as admin:`")
        url = self.base_url + path
        try:
            async with self._session.request(method, url, json=json, params=params, headers=self._headers,
                                             timeout=timeout or self._timeout) as resp:
                raw = await resp.read()
                status, reason, ctype = resp.status, resp.reason, resp.content_type
        except aiohttp.ClientConnectorError as exc:
            raise AdminUnreachable(self.base_url, _reason(exc)) from None
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            raise AdminUnreachable(self.base_url, _reason(exc) or "no answer in time") from None
        return answer_of(method, url, status, reason, ctype, raw, self._error)

    #: What a non-2xx answer raises (the typed clients raise the richer ``AdminProblem``).
    _error: type[AdminError] = AdminError


def answer_of(method: str, url: str, status: int, reason: str | None, ctype: str | None, raw: bytes,
            error: type[AdminError] = AdminError) -> dict:
    """The JSON object of a 2xx answer; ``error`` (an ``AdminError``) for anything else."""
    body = _decode(raw, ctype or "")
    if 200 <= status < 300:
        if not isinstance(body, dict):
            raise error(status, {"title": "Not an admin answer",
                                 "detail": f"{method} {url} answered {ctype or 'no content type'}"}, url)
        return body
    if isinstance(body, dict) and "title" in body:
        raise error(status, body, url)
    # Not one of ours (a proxy, another server on the port): keep what helps.
    text = raw.decode("utf-8", "replace").strip()[:200]
    raise error(status, {"title": reason or f"HTTP {status}", "status": status,
                         "detail": f"{method} {url}" + (f": {text}" if text else "")}, url)


def duration_value(duration: str | float) -> str | float:
    """Send numbers as numbers: the contract's duration strings need a unit ("90" is not one)."""
    if isinstance(duration, str):
        text = duration.strip().replace(" ", "")
        try:
            return float(text)
        except ValueError:
            return text
    return duration


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw or "json" not in (content_type or ""):
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, ConnectionRefusedError):
        return "connection refused"  # its strerror is a less helpful "Connect call failed"
    if os_error is not None:
        return os_error.strerror or str(os_error)
    return str(exc) or type(exc).__name__


def load_fault_profile(path: str | Path) -> list[dict]:
    """The rules of a YAML fault profile: a mapping with ``rules:`` or a bare list."""
    path = Path(path)
    doc = yaml.safe_load(path.read_text())
    if doc is None:
        return []
    rules = doc.get("rules") if isinstance(doc, dict) else doc
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise ValueError(f"{path}: a fault profile is a list of rules, or a mapping with a `rules:` list")
    return rules

"""One JSON-over-HTTP call to an external system, classified for the flows.

Every call carries the correlation id and an Idempotency-Key where it creates
something, and ends in one of three ways the retry policies understand: an
answer, a rejection (4xx: retrying the same request cannot help) or
unavailability (5xx, 429, timeout, connection refused: retry later).

Timeouts run on the core's clock: on a virtual clock a call's deadline passes when
the world moves the clock past it (``CoreClock.within``), as an upstream holding its
answer on the same clock (injected latency) answers when the clock gets there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
from pydantic import ValidationError

from ..clock import CoreClock
from .wire.base import Wire, describe

CORRELATION_HEADER = "X-Correlation-Id"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class UpstreamError(Exception):
    def __init__(self, system: str, message: str, *, status: int | None = None, problem: dict | None = None,
                 retry_after: float | None = None):
        super().__init__(f"{system}: {message}")
        self.system, self.status, self.problem, self.retry_after = system, status, problem, retry_after


class Unavailable(UpstreamError):
    """Worth retrying later: the system is down, overloaded or slow."""


class Rejected(UpstreamError):
    """The system understood and said no (4xx): the same request will not succeed."""


class Malformed(Unavailable):
    """A success we cannot read (not JSON, or not the shape its contract gives the answer):
    as good as no answer, so worth retrying; ``status`` is the success status it came with."""


M = TypeVar("M", bound=Wire)
#: Told of every call: the peer, its outcome (answered, rejected, unavailable, malformed) and
#: how long the peer took to answer (None: it did not).
Observer = Callable[[str, str, "float | None"], None]
_OUTCOMES = {Rejected: "rejected", Unavailable: "unavailable", Malformed: "malformed"}


class JsonClient:
    def __init__(self, system: str, base_url: str, session: aiohttp.ClientSession, *, timeout: float,
                 clock: CoreClock | None = None, observe: Observer | None = None):
        self.system, self.base_url, self.session, self.timeout = system, base_url.rstrip("/"), session, timeout
        self.on_clock = clock if clock is not None and clock.mode == "virtual" else None
        self.observe = observe

    async def call(self, method: str, path: str, *, json: Any = None, correlation_id: str | None = None,
                   idempotency_key: str | None = None, timeout: float | None = None) -> Answer:
        if self.observe is None:
            return await self._call(method, path, json, correlation_id, idempotency_key, timeout)
        started = time.perf_counter()
        try:
            answer = await self._call(method, path, json, correlation_id, idempotency_key, timeout)
        except UpstreamError as exc:
            answered = exc.status is not None  # a timeout or a refused connection has no answer to time
            self.observe(self.system, _OUTCOMES[type(exc)], time.perf_counter() - started if answered else None)
            raise
        self.observe(self.system, "answered", time.perf_counter() - started)
        return answer

    async def _call(self, method: str, path: str, json: Any, correlation_id: str | None,
                    idempotency_key: str | None, timeout: float | None) -> Answer:
        headers = {"Accept": "application/json"}
        if correlation_id:
            headers[CORRELATION_HEADER] = correlation_id
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        data = None
        if json is not None:
            data, headers["Content-Type"] = orjson.dumps(json), "application/json"
        limit = timeout or self.timeout

        async def exchange() -> tuple[bytes, int, dict[str, str]]:
            # real and scaled time: aiohttp's own timeout, in real seconds
            real = aiohttp.ClientTimeout(total=None if self.on_clock else limit)
            async with self.session.request(method, self.base_url + path, data=data, headers=headers,
                                            timeout=real) as r:
                return await r.read(), r.status, dict(r.headers)

        try:
            raw, status, resp_headers = await (self.on_clock.within(exchange(), limit) if self.on_clock
                                               else exchange())
        except TimeoutError:
            raise Unavailable(self.system, f"no answer to {method} {path} within {limit:g} s") from None
        except aiohttp.ClientError as exc:
            raise Unavailable(self.system, f"{method} {path} failed: {type(exc).__name__}: {exc}") from None
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            if status < 400:  # a success we cannot read is no success (a malformed_body fault, say)
                raise Malformed(self.system, f"{method} {path} answered {status} with a body that is not JSON",
                                  status=status) from None
            body = None
        if status >= 500 or status == 429:
            raise Unavailable(self.system, f"{method} {path} answered {status}", status=status,
                              problem=body if isinstance(body, dict) else None,
                              retry_after=_retry_after(resp_headers.get("Retry-After")))
        if status >= 400:
            detail = body.get("detail") or body.get("title") if isinstance(body, dict) else None
            raise Rejected(self.system, f"{method} {path} answered {status}" + (f": {detail}" if detail else ""),
                           status=status, problem=body if isinstance(body, dict) else None)
        return Answer(status, body, resp_headers)

    async def read(self, model: type[M], method: str, path: str, **call: Any) -> M:
        """``call``, its answer parsed as ``model`` (the wire layer: ``clients.wire``)."""
        answer = await self.call(method, path, **call)
        try:
            return model.model_validate(answer.body)
        except ValidationError as exc:
            raise Malformed(self.system, f"{method} {path} answered {answer.status} with a body its contract does "
                            f"not allow: {describe(exc)}", status=answer.status) from None


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None

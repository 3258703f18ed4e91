"""problem+json (RFC 9457): the core's one error shape, as the simulators'."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..domain.errors import (
    Conflict,
    DomainError,
    NotFound,
    Overloaded,
    PeerUnavailable,
    Refused,
)

PROBLEM_BASE = "https://caas-sim.dev/problems/"
#: Set on the core's app: its server answers even unparsable requests in problem+json.
ANSWERS_IN_PROBLEMS: web.AppKey[bool] = web.AppKey("answers_in_problems")


class Problem(Exception):
    """Raised anywhere under the API; answered as problem+json."""

    def __init__(self, status: int, title: str, detail: str | None = None, *, kind: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.kind = kind or "-".join(title.lower().replace(",", "").split())
        self.headers, self.extra = headers, extra

    def response(self) -> web.Response:
        body: dict[str, Any] = {"type": PROBLEM_BASE + self.kind, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        body.update({k: v for k, v in self.extra.items() if v is not None})
        return web.Response(status=self.status, body=orjson.dumps(body), content_type="application/problem+json",
                            headers=self.headers)


#: The HTTP status of each kind of refusal the flows raise.
STATUS_OF: dict[type[DomainError], int] = {NotFound: 404, Conflict: 409, Refused: 422, PeerUnavailable: 503,
                                          Overloaded: 503}


def problem_of(error: DomainError) -> Problem:
    """The problem+json answer to a refusal raised by a flow."""
    status = next(code for kind, code in STATUS_OF.items() if isinstance(error, kind))
    headers = None if error.retry_after is None else {"Retry-After": str(error.retry_after)}
    return Problem(status, error.title, error.detail, kind=error.kind, headers=headers, **error.extra)


def _answer_unparsable_requests() -> None:
    """A request aiohttp cannot parse (a control character or an oversize value in a header,
    a bad request line) is answered by aiohttp itself, in text/plain, before any middleware
    runs; it has no hook for that answer (aiohttp issue 3287). Wrapping its error handler
    makes the core's server answer those in problem+json too; other servers keep theirs."""
    original = web.RequestHandler.handle_error

    def handle_error(self, request, status=500, exc=None, message=None):
        response = original(self, request, status, exc, message)
        if 400 <= status < 500 and _serves_core(self):
            detail = " ".join(str(message or "").split())[:300].encode("ascii", "backslashreplace").decode()
            response = Problem(status, "Bad Request", detail or None, kind="unparsable-request").response()
            response.force_close()  # as aiohttp's own answer: what follows on the stream is unusable
        return response

    web.RequestHandler.handle_error = handle_error


def _serves_core(handler: web.RequestHandler) -> bool:
    server = getattr(handler, "_manager", None)  # the Server, whose handler is the app's
    app = getattr(getattr(server, "request_handler", None), "__self__", None)
    return isinstance(app, web.Application) and app.get(ANSWERS_IN_PROBLEMS, False)


_answer_unparsable_requests()  # at import: before the core's server can take a request

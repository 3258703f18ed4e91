"""RFC 9457 problem+json responses, the one error shape of every service."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .errors import ProblemError

PROBLEM_BASE = "https://caas-sim.dev/problems/"
PROBLEM_TYPE = "application/problem+json"


def problem(status: int, title: str, detail: str | None = None, *, kind: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"type": PROBLEM_BASE + (kind or _slug(title)), "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extra.items() if v is not None})
    return web.Response(status=status, body=orjson.dumps(body), content_type=PROBLEM_TYPE,
                        headers=headers)


def from_error(exc: ProblemError) -> web.Response:
    return problem(exc.status, exc.title, exc.detail, kind=exc.kind, headers=exc.headers, **exc.extra)


def _slug(title: str) -> str:
    return "-".join(title.lower().replace(",", "").split())


#: Set on the apps whose server answers unparsable requests in problem+json.
UNPARSABLE_AS_PROBLEMS: web.AppKey[bool] = web.AppKey("unparsable_as_problems")


def answer_unparsable_requests(app: web.Application) -> None:
    """``app`` answers problem+json to requests aiohttp cannot parse, too.

    aiohttp answers those itself (a control character or an oversize value in a header, a
    bad request line), in text/plain, before any route runs; it has no hook for that answer
    (aiohttp issue 3287). Its error handler is wrapped, once; other servers keep theirs."""
    global _wrapped
    app[UNPARSABLE_AS_PROBLEMS] = True
    if _wrapped:
        return
    original = web.RequestHandler.handle_error

    def handle_error(self, request, status=500, exc=None, message=None):
        response = original(self, request, status, exc, message)
        server = getattr(self, "_manager", None)  # the Server, whose handler is the app's
        served = getattr(getattr(server, "request_handler", None), "__self__", None)
        if 400 <= status < 500 and isinstance(served, web.Application) and served.get(UNPARSABLE_AS_PROBLEMS):
            detail = " ".join(str(message or "").split())[:300].encode("ascii", "backslashreplace").decode()
            response = problem(status, "Bad Request", detail or None, kind="unparsable-request")
            response.force_close()  # as aiohttp's own answer: what follows on the stream is unusable
        return response

    web.RequestHandler.handle_error = handle_error
    _wrapped = True


_wrapped = False

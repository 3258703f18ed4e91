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

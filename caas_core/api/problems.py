"""problem+json (RFC 9457): the core's one error shape, as the simulators'."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

PROBLEM_BASE = "https://caas-sim.dev/problems/"


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

"""What every handler of the core's app finds on it, and the admin routes' guard."""

from __future__ import annotations

from aiohttp import web

from ..flows.core import Core
from ..flows.runner import JobRunner
from .problems import Problem
from .quiesce import Requests

CORE_KEY: web.AppKey[Core] = web.AppKey("core")
RUNNER_KEY: web.AppKey[JobRunner] = web.AppKey("runner")
#: The requests at work, and the gate they wait at during a reset (``quiesce``).
REQUESTS_KEY: web.AppKey[Requests] = web.AppKey("requests")


def require_admin(request: web.Request) -> None:
    """Admin routes: the admin token when one is set, else loopback callers only."""
    token = request.app[CORE_KEY].settings.admin_token
    if token:
        if request.headers.get("Authorization", "") != f"Bearer {token}":
            raise Problem(401, "Admin token required", kind="admin-unauthorised")
    elif request.remote not in ("127.0.0.1", "::1"):
        raise Problem(401, "Admin token required", "admin routes answer loopback callers only",
                      kind="admin-unauthorised")

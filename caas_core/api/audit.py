"""``GET /__admin/audit``: the invariant audit (flows.audit) as an admin route.

Admin-protected like the rest of the core's admin protocol. Always 200 when the audit
ran: ``ok`` says whether the invariants hold, ``settled`` whether anything was still in
flight (callers settle first, then audit).
"""

from __future__ import annotations

import orjson
from aiohttp import web

from ..flows import audit
from .context import CORE_KEY, require_admin


async def get_audit(request: web.Request) -> web.Response:
    require_admin(request)
    core = request.app[CORE_KEY]
    report = await audit.run(core.db, core.clock.now())
    return web.Response(body=orjson.dumps(report), content_type="application/json")

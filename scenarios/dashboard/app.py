"""The dashboard's aiohttp application: a page, its script and style, and a small JSON API
over the admin protocol of the world's services.

Routes (the page is ``/``; everything else is what its script calls):

- ``GET /api/info``: the services, whether a scenario report is there;
- ``GET /api/events``: server-sent events (``hello``, ``health``, ``faults``, ``journal``,
  ``notice``; ``Last-Event-ID`` resumes the journal);
- ``GET /api/services``: each service's ``/__admin/health`` now;
- ``POST /api/clock``: ``{"advance": "15m"}`` or ``{"next": true}``: every clock moves as
  ``caas-sim clock advance`` moves them (``clock.move``);
- ``GET /api/faults``; ``POST /api/faults/{service}`` (a rule as in contracts/admin.yaml);
  ``DELETE /api/faults/{service}/{ruleId}``;
- ``GET /api/vehicles/{vin}``: the IoT simulator's ``GET /vehicles/{vin}/status`` (its
  public API) and the vehicle's OTA requests from the IoT journal;
- ``GET /report``: the last scenario report (``build/scenarios/report.md``), if any.

It reaches the services only over HTTP, with the admin token when there is one: the same
page works for a world of `caas-sim up`, for services started one by one, and for a core
written by someone else (what that core does not serve is said once and left alone).

Off loopback the dashboard is guarded as the admin routes are: open it once as
``/?token=T`` (the admin token); a cookie then carries it. Changes (POST, DELETE) need a
JSON body and, when the browser sends one, an ``Origin`` of the dashboard itself, so that
another site open in the same browser cannot move the clock or add faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib.resources
import itertools
import re
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import aiohttp
from aiohttp import web

from caas_sim import catalogue
from caas_sim.simulators.client import AdminError, AdminUnreachable, duration_value
from caas_sim.simulators.kit.durations import parse_duration
from caas_sim.simulators.kit.service import is_loopback

from . import clock, rows
from .hub import KEEPALIVE, POLL_INTERVAL, Hub

#: The dashboard's port: the catalogue's base (the core's port) plus this, 8190 by default.
DASHBOARD_OFFSET = 190
DASHBOARD_PORT = catalogue.CORE_PORT + DASHBOARD_OFFSET
#: Where `caas-sim demo` and `caas-sim scenario run` write their report, relative to the
#: working directory.
REPORT = Path("build/scenarios/report.md")
#: The page and its assets (package data: read through importlib.resources).
STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
COOKIE = "caas_dashboard_token"
#: Real seconds between two looks at whether a browser listening to the event stream left.
GONE_CHECK = 0.5
#: A vehicle identification number as the IoT contract has it.
_VIN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")

HUB_KEY = web.AppKey("hub", Hub)
CONFIG_KEY = web.AppKey("config", dict)


def create_app(services: dict[str, str], *, token: str | None = None, guarded: bool = False,
               report: Path | None = REPORT, interval: float = POLL_INTERVAL,
               lanes: dict[str, str] | None = None) -> web.Application:
    """The dashboard of ``services`` (name -> base URL; the core under ``core``).
    ``token``: the services' admin token; ``guarded``: the dashboard itself asks for it
    (bound off loopback). ``lanes`` names further URLs webhooks may go to (a sink)."""
    if guarded and not token:
        raise ValueError("a dashboard off loopback needs the admin token")
    app = web.Application(middlewares=[_problems, _guard])
    hub = Hub(services, token=token, interval=interval, lanes=lanes)
    app[HUB_KEY] = hub
    app[CONFIG_KEY] = {"token": token, "guarded": guarded, "report": report, "ids": itertools.count(1),
                       "moving": asyncio.Lock()}
    app.router.add_get("/", _page)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/info", _info)
    app.router.add_get("/api/events", _events)
    app.router.add_get("/api/services", _services)
    app.router.add_post("/api/clock", _clock)
    app.router.add_get("/api/faults", _faults)
    app.router.add_post("/api/faults/{service}", _add_fault)
    app.router.add_delete("/api/faults/{service}/{rule}", _delete_fault)
    app.router.add_get("/api/vehicles/{vin}", _vehicle)
    app.router.add_get("/report", _report)

    async def start(app: web.Application) -> None:
        await hub.start()

    async def shutdown(app: web.Application) -> None:
        await hub.close()  # ends every event stream, so that the server stops at once

    app.on_startup.append(start)
    app.on_shutdown.append(shutdown)
    return app


# --- guard ----------------------------------------------------------------------------------

def _problem(status: int, title: str, detail: str | None = None, **extra: Any) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, **({"detail": detail} if detail else {}), **extra}
    return web.json_response(body, status=status, content_type="application/problem+json")


@web.middleware
async def _problems(request: web.Request, handler):
    """A refusal raised as aiohttp's exception (no route, wrong method, a body that is not a
    JSON object, an unknown service) answered as problem+json like the others: the page
    shows a problem's title and detail, and only "HTTP 400" of a plain-text answer."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = exc.text or ""
        detail = None if text == f"{exc.status}: {exc.reason}" else text
        response = _problem(exc.status, exc.reason, detail)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response


@web.middleware
async def _guard(request: web.Request, handler):
    config = request.app[CONFIG_KEY]
    if config["guarded"]:
        token = config["token"]
        given = request.query.get("token")
        bearer = request.headers.get("Authorization", "")
        offered = given or request.cookies.get(COOKIE) or (bearer[7:] if bearer.startswith("Bearer ") else "")
        if not hmac.compare_digest(offered.encode(), token.encode()):
            return _problem(401, "Admin token required",
                            "open the dashboard as /?token=<the admin token> (then a cookie carries it)")
        if given:  # once in the address, then in a cookie; the address is cleaned
            found = web.HTTPFound(request.rel_url.with_query({k: v for k, v in request.query.items()
                                                              if k != "token"}))
            found.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
            raise found
    if request.method in ("POST", "DELETE", "PUT"):
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return _problem(403, "Cross-origin change refused", f"Origin {origin} is not this dashboard")
        if request.method != "DELETE" and request.content_type != "application/json":
            return _problem(415, "JSON only", "send Content-Type: application/json")
    return await handler(request)


# --- page --------------------------------------------------------------------------------------

def _asset(name: str) -> bytes:
    return importlib.resources.files(__package__).joinpath("static", name).read_bytes()


async def _page(request: web.Request) -> web.Response:
    return web.Response(body=_asset("index.html"), content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.Response(body=_asset(name), content_type=STATIC[name], charset="utf-8",
                        headers={"Cache-Control": "no-store"})


def _report_path(request: web.Request) -> Path | None:
    report = request.app[CONFIG_KEY]["report"]
    return report if report is not None and report.is_file() else None


async def _info(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    return web.json_response({"services": hub.services, "report": _report_path(request) is not None,
                              "iot": "iot" in hub.services, "notices": list(hub.notices)})


async def _report(request: web.Request) -> web.Response:
    path = _report_path(request)
    if path is None:
        raise web.HTTPNotFound(text="no scenario report yet: `caas-sim demo` writes build/scenarios/report.md")
    return web.Response(text=path.read_text(encoding="utf-8"), content_type="text/plain", charset="utf-8")


# --- events ------------------------------------------------------------------------------------

async def _events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    last = request.headers.get("Last-Event-ID") or request.query.get("since")
    queue = hub.subscribe(int(last) if last and last.isdigit() else None)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    try:
        await response.prepare(request)
        await response.write(b"retry: 1000\n\n")
        quiet = 0.0
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), GONE_CHECK)
            except TimeoutError:
                # aiohttp does not cancel a handler whose client left: look, and keep the line open.
                if request.transport is None or request.transport.is_closing():
                    break
                quiet += GONE_CHECK
                if quiet < KEEPALIVE:
                    continue
                message = b": keep-alive\n\n"
            if message is None:
                break
            quiet = 0.0
            await response.write(message)
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        pass  # the browser went away
    finally:
        hub.unsubscribe(queue)
    with contextlib.suppress(ConnectionResetError, aiohttp.ClientConnectionResetError):
        await response.write_eof()
    return response


# --- services and clock ------------------------------------------------------------------------

async def _services(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    return web.json_response({"services": hub.services, "health": await hub.read_health()})


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="a JSON object, please")
    return body


async def _clock(request: web.Request) -> web.Response:
    config, hub = request.app[CONFIG_KEY], request.app[HUB_KEY]
    body = await _json_body(request)
    to_next = body.get("next") is True
    seconds = None
    if not to_next:
        advance = body.get("advance")
        if not isinstance(advance, (str, int, float)) or isinstance(advance, bool):
            return _problem(400, "Not a duration", 'give {"advance": "15m"} (or seconds), or {"next": true}')
        try:
            seconds = parse_duration(duration_value(advance))
        except (TypeError, ValueError) as exc:
            return _problem(400, "Not a duration", f"advance: {exc} (e.g. 15m, 1h, 1d or seconds)")
        if seconds <= 0:
            return _problem(400, "Not a duration", "advance must be more than nothing")
    if config["moving"].locked():
        return _problem(409, "The clock is moving", "a move is under way; wait for it to end")
    async with config["moving"]:
        try:
            moved = await clock.move(hub.services, token=config["token"], seconds=seconds, to_next=to_next)
        except clock.ClockRefused as exc:
            return _problem(409, "The clock cannot move", str(exc))
        except clock.ClockUnreachable as exc:
            return _problem(502, "A service does not answer", str(exc))
        except AdminError as exc:
            return _problem(502, "A service refused the move", f"{exc.url}: {exc}")
        except AdminUnreachable as exc:
            return _problem(502, "A service does not answer", str(exc))
    hub.refresh()
    for note in moved.notes:
        hub.notice(note)
    return web.json_response({"clocks": moved.clocks, "seconds": moved.seconds, "notes": moved.notes})


# --- faults ------------------------------------------------------------------------------------

def _service(request: web.Request) -> str:
    name = request.match_info["service"]
    if name not in request.app[HUB_KEY].services:
        raise web.HTTPNotFound(text=f"no service {name!r} in this world")
    return name


async def _faults(request: web.Request) -> web.Response:
    return web.json_response(await request.app[HUB_KEY].read_faults())


def _admin_error(exc: AdminError | AdminUnreachable) -> web.Response:
    if isinstance(exc, AdminUnreachable):
        return _problem(502, "The service does not answer", str(exc))
    status = exc.status if 400 <= exc.status < 600 else 502
    return web.json_response(exc.problem, status=status, content_type="application/problem+json")


async def _add_fault(request: web.Request) -> web.Response:
    hub, name = request.app[HUB_KEY], _service(request)
    rule = await _json_body(request)
    try:
        added = await hub.admin(name).add_fault(rule)
    except (AdminError, AdminUnreachable) as exc:
        return _admin_error(exc)
    await hub.read_faults()
    return web.json_response({"rule": added}, status=201)


async def _delete_fault(request: web.Request) -> web.Response:
    hub, name = request.app[HUB_KEY], _service(request)
    try:
        removed = await hub.admin(name).delete_fault(request.match_info["rule"])
    except (AdminError, AdminUnreachable) as exc:
        return _admin_error(exc)
    await hub.read_faults()
    return web.json_response({"removed": removed})


# --- vehicles ----------------------------------------------------------------------------------

async def _vehicle(request: web.Request) -> web.Response:
    """The IoT simulator's public answer about a vehicle, and its OTA requests as the IoT
    journal recorded them (a read of the whole journal: the vehicle page is asked for
    now and then, not polled)."""
    config, hub = request.app[CONFIG_KEY], request.app[HUB_KEY]
    vin = request.match_info["vin"].strip().upper()
    if not _VIN.fullmatch(vin):  # asked of the IoT simulator, it would be a contract violation in its journal
        return _problem(400, "Not a VIN", f"{vin[:40]!r} is not 17 letters and digits (no I, O or Q)")
    if "iot" not in hub.services:
        return _problem(404, "No IoT simulator in this world")
    cid = f"{rows.DASHBOARD_PREFIX}{next(config['ids'])}"
    url = f"{hub.services['iot']}/vehicles/{quote(vin, safe='')}/status"
    try:
        async with hub.session.get(url, headers={"X-Correlation-Id": cid, "Accept": "application/json"},
                                   timeout=aiohttp.ClientTimeout(total=10)) as resp:
            status = resp.status
            answer = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return _problem(502, "The IoT simulator does not answer", str(exc) or type(exc).__name__)
    entries: list[dict] = []
    journal_error = None
    if "journal" not in hub.absent["iot"]:
        try:
            admin, since = hub.admin("iot"), 0
            while True:
                page = await admin.journal(since, 10_000)
                entries += [e for e in page["entries"] if (e.get("entities") or {}).get("vin") == vin]
                since = page["next"]
                if len(page["entries"]) < 10_000:
                    break
        except (AdminError, AdminUnreachable) as exc:
            journal_error = str(exc)
    ota = [e for e in entries if str(e.get("path", "")).startswith("/ota/") or e.get("kind") == "webhook"
           or str(e.get("event", "")).startswith("ota.") or e.get("kind") == "fault"]
    return web.json_response({"vin": vin, "status": status, "vehicle": answer if status == 200 else None,
                              "problem": answer if status != 200 else None,
                              "requests": rows.ota_requests(entries, vin),
                              "entries": [rows.with_row(e, hub.lanes) for e in ota],
                              "journalError": journal_error})


# --- serving -----------------------------------------------------------------------------------

class Dashboard:
    """The dashboard on a socket of its own: ``url`` once ``start`` returned."""

    def __init__(self, services: dict[str, str], *, host: str = "127.0.0.1", port: int = DASHBOARD_PORT,
                 token: str | None = None, report: Path | None = REPORT, interval: float = POLL_INTERVAL,
                 lanes: dict[str, str] | None = None):
        self.app = create_app(services, token=token, guarded=not is_loopback(host), report=report,
                              interval=interval, lanes=lanes)
        self.host, self.port = host, port
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Dashboard:
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        try:
            await web.TCPSite(self.runner, self.host, self.port).start()
        except BaseException:
            await self.runner.cleanup()
            self.runner = None
            raise
        bound = self.runner.addresses[0][1]
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(self.host, self.host)
        self.url = f"http://{host}:{bound}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

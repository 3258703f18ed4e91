"""Journal entries as rows of the dashboard's sequence diagram.

An entry of a simulator's journal (contracts/admin.yaml, ``JournalEntry``) becomes one row:
an arrow between two lanes (who called whom, or which webhook went where) or a note on one
lane (a domain event, an applied fault, a contract violation). The browser only draws what
this says, so the rules live here, in Python, where they are tested, and follow those of
the scenario report's Mermaid diagrams (``caas_sim.scenarios.scenario.report``): the core keeps no
journal, so its lane is drawn from what its peers saw.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from ..scenario import timeline

DASHBOARD_PREFIX = timeline.DASHBOARD_PREFIX
#: Lanes of callers that are not services: the dashboard, the scenario runner, anyone else.
DASHBOARD, SCENARIO, CLIENT, CORE = "dashboard", timeline.SCENARIO, "client", "core"


def caller(entry: dict) -> str:
    """Who made a request a simulator journaled. The reference core (and any core that
    propagates ``X-Correlation-Id``) sends an id of its own; the scenario runner's direct
    calls and the dashboard's carry their prefix; a caller that sent none got one the
    simulator made up (``iot-0000002a``): a client, not the core."""
    cid = str(entry.get("correlationId") or "")
    if cid.startswith(DASHBOARD_PREFIX):
        return DASHBOARD
    if cid.startswith(timeline.DIRECT_PREFIX):
        return SCENARIO
    if not cid or re.fullmatch(re.escape(str(entry.get("service", ""))) + r"-[0-9a-f]{8}", cid):
        return CLIENT
    return CORE


def peer_lane(peer: str | None, lanes: dict[str, str]) -> str:
    """The lane of the URL a webhook went to: the service whose base URL it starts with
    (``lanes``: name -> base URL), else its host and port."""
    if not peer:
        return CORE
    for name, base in lanes.items():
        if peer.rstrip("/").startswith(base.rstrip("/")):
            return name
    parts = urlsplit(peer)
    return parts.netloc or peer


def _extra(detail: dict[str, Any]) -> str:
    return next((str(detail[k]) for k in ("errorCode", "reason", "status", "outcome") if detail.get(k)), "")


def row(entry: dict, lanes: dict[str, str]) -> dict:
    """The drawing of one entry: ``from`` and ``to`` lanes (equal for a note), ``label``,
    ``style`` (``call``, ``webhook`` or ``note``) and ``mark`` (``fault``, ``violation``,
    ``error`` for a 4xx/5xx answer, or None)."""
    kind, service = entry.get("kind"), str(entry.get("service", "?"))
    rule = entry.get("ruleId")
    status = entry.get("status")
    detail = entry.get("detail") or {}
    mark = "fault" if rule else ("error" if isinstance(status, int) and status >= 400 else None)
    flash = f" ⚡{rule}" if rule else ""
    if kind == "request":
        what = entry.get("operation") or f"{entry.get('method', '')} {entry.get('path', '')}".strip()
        answer = status if status is not None else detail.get("outcome", "no answer")
        if entry.get("direction") == "out":
            return {"from": service, "to": peer_lane(entry.get("peer"), lanes), "label": f"{what} → {answer}{flash}",
                    "style": "call", "mark": mark}
        return {"from": caller(entry), "to": service, "label": f"{what} → {answer}{flash}", "style": "call",
                "mark": mark}
    if kind == "webhook":
        outcome = status if status is not None else detail.get("outcome", "?")
        attempt = detail.get("attempt")
        again = f" (attempt {attempt})" if isinstance(attempt, int) and attempt > 1 else ""
        if detail.get("outcome") in ("lost", "failed", "exhausted") and mark is None:
            mark = "error"
        return {"from": service, "to": peer_lane(entry.get("peer"), lanes),
                "label": f"{entry.get('event') or 'webhook'} → {outcome}{again}{flash}", "style": "webhook",
                "mark": mark}
    if kind == "event":
        text = f"{entry.get('event', 'event')} {_extra(detail)}".strip()
        return {"from": service, "to": service, "label": text, "style": "note", "mark": mark}
    if kind == "fault":
        action = detail.get("action")
        text = f"⚡ fault {rule}" + (f": {action}" if action else "")
        return {"from": service, "to": service, "label": text, "style": "note", "mark": "fault"}
    if kind == "violation":
        text = f"⛔ contract violation: {entry.get('violation', '')}".rstrip(": ")
        return {"from": caller(entry), "to": service, "label": text, "style": "call", "mark": "violation"}
    return {"from": service, "to": service, "label": str(kind), "style": "note", "mark": mark}


def with_row(entry: dict, lanes: dict[str, str]) -> dict:
    """The entry with its drawing under ``draw`` (the entry itself is left as it was)."""
    return {**entry, "draw": row(entry, lanes)}


def touches(entry: dict, needle: str) -> bool:
    """Whether an entry names ``needle`` (a VIN, an order, payment, purchase or request id),
    whole or in part, case aside, among its ``entities``."""
    needle = needle.strip().lower()
    return bool(needle) and any(needle in str(v).lower() for v in (entry.get("entities") or {}).values())


def ota_requests(entries: list[dict], vin: str) -> list[dict]:
    """The OTA requests of a vehicle from the IoT simulator's journal, oldest first: each
    ``requestId`` with its service, kind, when it was queued, its latest state and its
    webhook deliveries."""
    requests: dict[str, dict] = {}
    for e in entries:
        entities = e.get("entities") or {}
        rid = entities.get("requestId")
        if entities.get("vin") != vin or not rid:
            continue
        req = requests.setdefault(rid, {"requestId": rid, "serviceId": entities.get("serviceId"), "kind": None,
                                        "queued": e.get("vt"), "state": None, "updated": e.get("vt"),
                                        "webhooks": [], "faults": []})
        detail = e.get("detail") or {}
        if e.get("kind") == "event":
            if e.get("event") == "ota.queued":
                req["kind"] = detail.get("kind")
                req["queued"] = e.get("vt")
            req["state"] = f"{e.get('event')} {_extra(detail)}".strip()
            req["updated"] = e.get("vt")
        elif e.get("kind") == "webhook":
            req["webhooks"].append({"vt": e.get("vt"), "status": e.get("status"), "outcome": detail.get("outcome"),
                                    "attempt": detail.get("attempt")})
        elif e.get("kind") == "fault":
            req["faults"].append(e.get("ruleId"))
    return list(requests.values())

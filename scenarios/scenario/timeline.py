"""The merged journal of a scenario: labels, per-entity sequences, context lines.

Entries come from every simulator's journal (what the core asked of it, the
webhooks it sent, its domain events and applied faults) and from the runner
(``service: scenario``: the actors' calls to the core). The core keeps no
journal of its own; what it did is what its peers saw.
"""

from __future__ import annotations

from typing import Any

SCENARIO = "scenario"
#: Correlation ids of the runner's own calls to a simulator (magic VINs, workshop visits).
DIRECT_PREFIX = "scn-direct-"
#: The correlation id prefix of the live dashboard's own calls (its vehicle page's status
#: reads): a look from outside, no part of any journey.
DASHBOARD_PREFIX = "dashboard-"
#: Admin reads and fleet look-ups say nothing about the journey.
_QUIET_OPERATIONS = {"getMagicVins"}


def merged(entries: list[dict]) -> list[dict]:
    # Within one virtual instant, wall time gives the causal order across services
    # (the actor's call before what the core then asked of the simulators).
    return sorted(entries, key=lambda e: (e["vt"], e.get("wall", ""), e.get("service", ""), e.get("seq", 0)))


def caller(entry: dict) -> str:
    """Who made the request a simulator journaled: the runner directly, or the core."""
    return SCENARIO if str(entry.get("correlationId", "")).startswith(DIRECT_PREFIX) else "core"


def label(entry: dict) -> str | None:
    """A short, deterministic line for an entry (no ids, no wall time), or None to leave it out."""
    service, kind = entry.get("service"), entry.get("kind")
    if kind == "request":
        if entry.get("operation") in _QUIET_OPERATIONS:
            return None
        what = entry.get("operation") or f"{entry.get('method')} {entry.get('path')}"
        return f"{service}: {what} {entry.get('status', '-')}"
    if kind == "webhook":
        return f"{service} -> core: {entry.get('event')} {entry.get('status', entry.get('detail', {}).get('outcome'))}"
    if kind == "event":
        return f"{service}: {entry.get('event')}"
    if kind == "fault":
        return f"{service}: fault {entry.get('ruleId')}"
    if kind == "violation":
        return f"{service}: violation"
    if kind == "call":
        return f"{entry.get('actor')} -> core: {entry.get('method')} {entry.get('status')}"
    return None


def touches(entry: dict, entity: dict[str, Any]) -> bool:
    entities = entry.get("entities") or {}
    return all(entities.get(key) == value for key, value in entity.items())


def sequence(entries: list[dict], entity: dict[str, Any]) -> list[str]:
    """The labels of the entries naming ``entity`` (e.g. ``{"vin": ...}``), in order."""
    return [text for e in entries if touches(e, entity) and (text := label(e))]


def sequences(entries: list[dict], key: str = "vin") -> dict[str, list[str]]:
    """Every entity of one kind and its sequence: what the determinism test compares."""
    out: dict[str, list[str]] = {}
    for e in entries:
        value = (e.get("entities") or {}).get(key)
        text = label(e)
        if value and text:
            out.setdefault(value, []).append(text)
    return out


def is_subsequence(wanted: list[str], seen: list[str]) -> bool:
    it = iter(seen)
    return all(any(_same(w, s) for s in it) for w in wanted)


def _same(wanted: str, seen: str) -> bool:
    # A label without a status matches any status: `iot: activateService` ~ `iot: activateService 202`.
    return seen == wanted or seen.startswith(wanted + " ")


def render(entry: dict) -> str:
    cols = [entry["vt"], f"{entry.get('service', '?'):<11}", f"{entry.get('kind', '?'):<9}"]
    if entry.get("kind") == "call":
        cols.append(f"{entry.get('actor')} {entry.get('method')} {entry.get('path')} -> {entry.get('status')}")
    elif entry.get("kind") == "note":
        cols.append(entry.get("text", ""))
    else:
        cols.append(f"{entry.get('direction', '')} {entry.get('method') or ''} {entry.get('path') or ''}".strip())
        if entry.get("status") is not None:
            cols.append(str(entry["status"]))
        for key in ("operation", "event", "ruleId", "violation"):
            if entry.get(key):
                cols.append(f"{key}={entry[key]}")
        if entry.get("entities"):
            cols.append(" ".join(f"{k}={v}" for k, v in entry["entities"].items() if k in ("vin", "paymentId",
                                                                                          "orderId", "requestId")))
    return " ".join(cols)


def around(entries: list[dict], words: set[str], lines: int = 14) -> list[str]:
    """The journal lines a failure is about: the last ones naming any of ``words`` (else the last ones)."""
    if words:
        hits = [e for e in entries if words & _strings(e)]
        if hits:
            return [render(e) for e in hits[-lines:]]
    return [render(e) for e in entries[-lines:]]


def _strings(entry: dict) -> set[str]:
    out = {str(v) for v in (entry.get("entities") or {}).values()}
    out.update(str(entry.get(k)) for k in ("path", "operation", "event", "ruleId") if entry.get(k))
    return out

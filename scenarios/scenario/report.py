"""What a run produces: the terminal summary, the Markdown report with a Mermaid
sequence diagram per scenario, and JUnit XML for CI."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from caas_sim.simulators.kit.durations import format_duration

from . import timeline
from .runner import Outcome

#: Arrows per diagram: a month of traffic would not render; the rest is counted.
MAX_ARROWS = 160
_SYMBOL = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP", "xfail": "XFAIL", "xpass": "XPASS"}


HEADERS = ["SCENARIO", "RESULT", "VIRTUAL TIME", "WALL", "OF WHICH JOURNEY"]


def summary(outcomes: list[Outcome], wall: float) -> str:
    rows = [[o.name, _SYMBOL[o.result], _virtual(o.virtual_seconds), f"{o.wall_seconds:.2f} s",
             f"{o.wall_seconds - o.setup_seconds:.2f} s"] for o in outcomes]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(HEADERS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    unchecked = [(o.name, u) for o in outcomes for u in o.unchecked]
    if unchecked:
        lines.append("\nnot checked in this world:")
        lines += [f"  {name}: {what}" for name, what in unchecked]
    counts = {k: sum(o.result == k for o in outcomes) for k in _SYMBOL}
    virtual = sum(o.virtual_seconds for o in outcomes)
    lines.append(f"\n{counts['passed']} passed, {counts['failed'] + counts['xpass']} failed, {counts['error']} errors, "
                 f"{counts['skipped']} skipped, {counts['xfail']} known issues (XFAIL); "
                 f"{_virtual(virtual)} of virtual time in {wall:.1f} s of wall time")
    return "\n".join(lines)


def failure_text(outcome: Outcome) -> str:
    if outcome.result == "skipped":
        return f"{outcome.name}: skipped: {outcome.failure}"
    lines = [f"{outcome.name}: {outcome.result.upper()} {outcome.failure}",
             "  journal around it:" if outcome.context else "  (empty journal)"]
    lines += [f"    {line}" for line in outcome.context]
    return "\n".join(lines)


def _virtual(seconds: float) -> str:
    return format_duration(round(seconds)) if seconds >= 1 else f"{seconds:.1f}s"


# --- Markdown and Mermaid -------------------------------------------------------

def markdown(outcomes: list[Outcome], wall: float, seed: int | None) -> str:
    out = ["# Scenario report", "",
           (f"Seed: {seed if seed is not None else 'each scenario its own'}. "
            f"{sum(o.result == 'passed' for o in outcomes)} of {len(outcomes)} passed in {wall:.1f} s of wall time."),
           "", "| scenario | result | virtual time | wall | proves |", "|---|---|---|---|---|"]
    for o in outcomes:
        out.append(f"| [{o.name}](#{o.name}) | {_SYMBOL[o.result]} | {_virtual(o.virtual_seconds)} | "
                   f"{o.wall_seconds:.2f} s | {_cell(o.proves)} |")
    for o in outcomes:
        out += ["", f"## {o.name}", "", f"**{_SYMBOL[o.result]}**: {o.proves}", ""]
        if o.spec:
            out += [f"Specification: {o.spec}", ""]
        out += [(f"Seed {o.seed}; {_virtual(o.virtual_seconds)} of virtual time in {o.wall_seconds:.2f} s "
                f"(the journey {o.wall_seconds - o.setup_seconds:.2f} s, starting the world the rest)."), ""]
        if o.failure:
            out += ["```text", failure_text(o), "```", ""]
        out += [f"Not checked in this world: {what}." for what in o.unchecked] + ([""] if o.unchecked else [])
        if o.journal:
            out += ["```mermaid", sequence_diagram(o.journal), "```"]
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _pid(name: str) -> str:
    return name.replace("-", "_")


def _text(text: str) -> str:
    # Mermaid ends a message at ';' and reads '#' as an entity.
    return str(text).replace(";", ",").replace("#", "no.").replace("\n", " ")


def sequence_diagram(entries: list[dict]) -> str:
    """The journey as a Mermaid sequenceDiagram: actors, the core, each system; faults marked."""
    actors: list[str] = []
    services: list[str] = []
    lines: list[str] = []
    arrows = skipped = 0
    last_vt = None
    for e in entries:
        line = _line(e, actors, services)
        if line is None:
            continue
        if arrows >= MAX_ARROWS:
            skipped += 1
            continue
        if e["vt"] != last_vt:
            if last_vt is not None:
                lines.append(f"    Note over core: {e['vt'][:19].replace('T', ' ')}")
            last_vt = e["vt"]
        lines.append(line)
        arrows += 1
    head = ["sequenceDiagram"]
    head += [f"    actor {_pid(a)} as {a}" for a in actors]
    head += ["    participant core"] + [f"    participant {_pid(s)} as {s}" for s in services]
    if skipped:
        lines.append(f"    Note over core: ... {skipped} more exchanges (see the journal)")
    return "\n".join(head + lines)


def _line(e: dict, actors: list[str], services: list[str]) -> str | None:
    kind, service = e.get("kind"), e.get("service", "")

    def seen(name: str, into: list[str]) -> str:
        if name not in into:
            into.append(name)
        return _pid(name)

    if service == timeline.SCENARIO:
        if kind == "note":
            return f"    Note over core: {_text(e.get('text', ''))}"
        if kind != "call" or e.get("poll"):
            return None  # checks of `until` and `expect` read state, they are not the journey
        actor = seen(e.get("actor", "scenario"), actors)
        target = "core" if e.get("on") == "core" else seen(e["on"], services)
        return f"    {actor}->>{target}: {_text(e['method'])} {_text(e['path'])} → {e.get('status', '?')}"
    if kind == "request":
        if e.get("operation") in ("getMagicVins",) or timeline.caller(e) != "core":
            return None  # the runner's own calls are drawn from its side
        fault = f" ⚡{_text(e['ruleId'])}" if e.get("ruleId") else ""
        what = e.get("operation") or f"{e.get('method')} {e.get('path')}"
        return f"    core->>{seen(service, services)}: {_text(what)} → {e.get('status', '?')}{fault}"
    if kind == "webhook":
        outcome = e.get("status") or (e.get("detail") or {}).get("outcome")
        fault = f" ⚡{_text(e['ruleId'])}" if e.get("ruleId") else ""
        return f"    {seen(service, services)}-)core: {_text(e.get('event'))} → {outcome}{fault}"
    if kind == "event":
        detail = e.get("detail") or {}
        extra = next((str(detail[k]) for k in ("errorCode", "reason", "status") if detail.get(k)), "")
        return f"    Note over {seen(service, services)}: {_text(e.get('event'))} {_text(extra)}".rstrip()
    if kind == "fault":
        return f"    Note over {seen(service, services)}: ⚡ fault {_text(e.get('ruleId'))} applied"
    if kind == "violation":
        return f"    Note over {seen(service, services)}: ⛔ contract violation"
    return None


# --- JUnit ------------------------------------------------------------------

def junit(outcomes: list[Outcome], path: str | Path) -> None:
    suite = ET.Element("testsuite", name="caas-scenarios", tests=str(len(outcomes)),
                       failures=str(sum(o.result in ("failed", "xpass") for o in outcomes)),
                       errors=str(sum(o.result == "error" for o in outcomes)),
                       skipped=str(sum(o.result == "skipped" for o in outcomes)),
                       time=f"{sum(o.wall_seconds for o in outcomes):.3f}")
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname="scenarios.catalogue", name=o.name,
                             time=f"{o.wall_seconds:.3f}")
        if o.result in ("failed", "error", "xpass"):
            element = ET.SubElement(case, "error" if o.result == "error" else "failure",
                                    message=(o.failure or "").splitlines()[0][:500])
            element.text = failure_text(o)
        elif o.result in ("skipped", "xfail"):
            ET.SubElement(case, "skipped", message=(o.failure or "").splitlines()[0][:500])
        ET.SubElement(case, "system-out").text = f"virtual time: {_virtual(o.virtual_seconds)}; proves: {o.proves}"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)

"""What a scenario expects, checked at its end: states, notifications, tickets,
collection cases, journal entries, API sequences, contract violations, the audits.

``ExpectationChecks`` is the part of a play (``runner.Play``) that checks them; it uses
the play's world, values and requests.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .. import peer_audit
from . import timeline
from .model import (
    AuditExpectation,
    CollectionExpectation,
    JournalExpectation,
    NotificationsExpectation,
    SequenceExpectation,
    StateExpectation,
    TicketsExpectation,
    ViolationsExpectation,
)
from .values import MissingValue, dig, mismatches


class Failed(Exception):
    """A step or an expectation that did not hold; ``words`` pick the journal lines to show."""

    def __init__(self, what: str, why: str, words: set[str] | None = None):
        super().__init__(f"{what}: {why}")
        self.what, self.why, self.words = what, why, words or set()


class ExpectationChecks:
    async def _check_all(self) -> list[Failed]:
        problems = []
        journal = await self._merged_journal()
        explicit_violations = any(isinstance(e, ViolationsExpectation) for e in self.scenario.expect)
        expectations = list(self.scenario.expect)
        if not explicit_violations:
            expectations.append(ViolationsExpectation(violations=0))
        for index, expectation in enumerate(expectations, 1):
            label = _describe(expectation, index, len(self.scenario.expect))
            try:
                wrong, words = await self._expectation(expectation, journal)
            except MissingValue as exc:
                wrong, words = [str(exc)], set()
            if wrong:
                problems.append(Failed(label, "; ".join(wrong), words))
        return problems

    async def _expectation(self, e: Any, journal: list[dict]) -> tuple[list[str], set[str]]:
        if isinstance(e, StateExpectation):
            path = self._resolve(e.state.get)
            return await self._check(e.state, "expect"), words_in(path) | self._journey_words()
        if isinstance(e, NotificationsExpectation):
            spec = e.notifications
            customer = self._resolve(spec.customer)
            status, body = await self._request("GET", "core", f"/customers/{customer}/notifications", spec.as_,
                                               None, self._headers(spec.as_, "core", {}, "expect"), "expect", poll=True)
            if status != 200:
                return [f"GET notifications answered {status}: {brief(body)}"], set()
            told = [n for n in body["notifications"] if n["template"] == spec.template]
            wrong = []
            if spec.channels is not None and sorted({n["channel"] for n in told}) != sorted(spec.channels):
                wrong.append(f"{spec.template} went to {sorted({n['channel'] for n in told}) or 'no channel'}, "
                             f"expected {sorted(spec.channels)} (all templates sent: "
                             f"{sorted({n['template'] for n in body['notifications']})})")
            if spec.count is not None and len(told) != spec.count:
                wrong.append(f"{len(told)} {spec.template} notices, expected {spec.count}")
            return wrong, {customer}
        if isinstance(e, TicketsExpectation):
            spec = e.tickets
            status, body = await self._request("GET", "core", "/support/tickets", spec.as_, None,
                                               self._headers(spec.as_, "core", {}, "expect"), "expect", poll=True)
            if status != 200:
                return [f"GET /support/tickets answered {status}: {brief(body)}"], set()
            tickets = body["tickets"]
            wrong = []
            if spec.count is not None and len(tickets) != spec.count:
                wrong.append(f"{len(tickets)} tickets, expected {spec.count}: "
                             f"{[t['subject'] for t in tickets]}")
            if spec.match is not None:
                for t in tickets:
                    wrong.extend(f"ticket {t['ticketId']}: {m}" for m in mismatches(t, self._resolve(spec.match)))
            return wrong, {t["vin"] for t in tickets}
        if isinstance(e, JournalExpectation):
            spec = e.journal
            entity = self._resolve(spec.entity) if spec.entity else None
            hits = [x for x in journal if x.get("service") == spec.service
                    and (spec.kind is None or x.get("kind") == spec.kind)
                    and (spec.operation is None or x.get("operation") == spec.operation)
                    and (spec.path is None or x.get("path") == self._resolve(spec.path))
                    and (spec.event is None or x.get("event") == spec.event)
                    and (spec.status is None or x.get("status") == spec.status)
                    and (entity is None or timeline.touches(x, entity))]
            n, wrong = len(hits), []
            if spec.count is not None and n != spec.count:
                wrong.append(f"{n} matching entries, expected exactly {spec.count}")
            if spec.min is not None and n < spec.min:
                wrong.append(f"{n} matching entries, expected at least {spec.min}")
            if spec.max is not None and n > spec.max:
                wrong.append(f"{n} matching entries, expected at most {spec.max}")
            words = {str(v) for v in (entity or {}).values()} | {w for w in (spec.operation, spec.event) if w}
            return wrong, words
        if isinstance(e, SequenceExpectation):
            spec = e.sequence
            if spec.get is not None:
                return await self._api_sequence(spec)
            entity = self._resolve(spec.entity)
            seen = timeline.sequence(journal, entity)
            wanted = self._resolve(spec.events)
            ok = (len(seen) == len(wanted) and timeline.is_subsequence(wanted, seen)) if spec.exactly \
                else timeline.is_subsequence(wanted, seen)
            if ok:
                return [], set()
            return [(f"the events of {entity} were {seen}, expected {'exactly' if spec.exactly else 'in order'} "
                     f"{wanted}")], {str(v) for v in entity.values()}
        if isinstance(e, AuditExpectation):
            report = await peer_audit.audit(self.world.url("payments"), self.world.url("iot"),
                                            token=getattr(self.world, "token", None), session=self.world.session) \
                if e.audit.peers else await self.world.admin("core").audit()
            wrong = []
            if report["ok"] != e.audit.ok:
                wrong.append(f"audit ok is {report['ok']}, expected {e.audit.ok}: "
                             + "; ".join(f"{v['invariant']}: {v['detail']}" for v in report["violations"][:5]))
            if e.audit.settled is not None and report["settled"] != e.audit.settled:
                wrong.append(f"audit settled is {report['settled']} (in flight: {report['inFlight']}), "
                             f"expected {e.audit.settled}")
            return wrong, {str(v) for x in report["violations"] for v in x["entities"].values()}
        if isinstance(e, CollectionExpectation):
            cases = await self.world.collection_cases()
            if cases is None:  # only the core's database has them: say so rather than pass or fail
                self.unchecked.append(f"collection_cases {e.collection_cases.model_dump(exclude_none=True)}: "
                                      "the core's database only")
                return [], set()
            spec = e.collection_cases
            chosen = [c for c in cases if spec.status is None or c["status"] == spec.status]
            if len(chosen) != spec.count:
                return [(f"{len(chosen)} collection cases{' ' + spec.status if spec.status else ''}, expected "
                         f"{spec.count} (all: {[(c['amount_minor'], c['status']) for c in cases]})")], set()
            return [], set()
        if isinstance(e, ViolationsExpectation):
            found = [x for x in journal if x.get("kind") == "violation"]
            if len(found) != e.violations:
                return [f"{len(found)} contract violations, expected {e.violations}: "
                        + "; ".join(str(x.get("violation"))[:200] for x in found[:3])], {"violation"}
            return [], set()
        return [f"unknown expectation {e!r}"], set()


    async def _api_sequence(self, spec: Any) -> tuple[list[str], set[str]]:
        """A sequence read from a list an API answers (a sale's file, a customer's notices)."""
        path = self._resolve(spec.get)
        status, body = await self._request("GET", "core", path, spec.as_, None,
                                           self._headers(spec.as_, "core", {}, "expect"), "expect", poll=True)
        if status != 200:
            return [f"GET {path} answered {status}: {brief(body)}"], words_in(path)
        try:
            items = dig(body, spec.items)
        except MissingValue:
            return [f"GET {path} has no {spec.items!r}: {brief(body)}"], words_in(path)
        where = self._resolve(spec.where) if spec.where is not None else None
        seen = [_label(item, spec.label) for item in items if where is None or not mismatches(item, where)]
        wanted = self._resolve(spec.events)
        ok = seen == wanted if spec.exactly else timeline.is_subsequence(wanted, seen)
        if ok:
            return [], set()
        return [(f"the {spec.items} of GET {path} were {seen}, expected {'exactly' if spec.exactly else 'in order'} "
                f"{wanted}")], words_in(path) | self._journey_words()


_FIELD = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")


def _label(item: Any, template: str) -> str:
    """``template`` with each ``{dotted.field}`` of ``item`` (a missing or null field: nothing)."""
    def field(m: re.Match) -> str:
        try:
            value = dig(item, m.group(1))
        except MissingValue:
            return ""
        return "" if value is None else str(value)
    return " ".join(_FIELD.sub(field, template).split())


def _describe(expectation: Any, index: int, declared: int) -> str:
    body = expectation.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
    where = f"expectation {index}" if index <= declared else "implicit expectation"
    return f"{where} {orjson.dumps(body).decode()}"


def brief(answer: Any, limit: int = 300) -> str:
    text = answer if isinstance(answer, str) else orjson.dumps(answer).decode()
    return text if len(text) <= limit else text[:limit] + "..."


def words_in(path: str) -> set[str]:
    return {part for part in path.split("/") if len(part) > 10}

"""Fault rules: what to break, when, and how often.

A rule is ``match`` (method, path template or glob, operationId, entity
selectors with globs) + ``action`` (a transport action applied around the
handler, or a domain fault a simulator consults at its decision points) +
scope (``times``, seeded ``probability``, virtual-time ``window``). Every
application is journaled with the rule id.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .clock import MAX_TIME, isoformat, parse_datetime
from .durations import parse_duration

TRANSPORT_ACTIONS = ("latency", "http_error", "timeout", "reset", "malformed_body")


class FaultError(ValueError):
    """A fault rule that cannot be accepted; the message says why."""


class FaultConflict(FaultError):
    """A rule with this id already exists."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LatencyParams(_Strict):
    ms: float = Field(ge=0)
    jitter_ms: float = Field(default=0, ge=0)


class HttpErrorParams(_Strict):
    status: int = Field(default=503, ge=400, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    phase: Literal["before", "after"] = "before"


class TimeoutParams(_Strict):
    seconds: float = Field(default=300, gt=0)
    phase: Literal["before", "after"] = "before"


class ResetParams(_Strict):
    phase: Literal["before", "after"] = "before"


class NoParams(_Strict):
    """An action without parameters (any given is an error)."""


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    kind: str  # transport | domain
    description: str
    params: type[BaseModel] = NoParams

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "description": self.description,
                "params": self.params.model_json_schema()}


TRANSPORT_SPECS = {
    "latency": ActionSpec("latency", "transport", "Delay the response by ms (+ uniform jitter) of clock time", LatencyParams),
    "http_error": ActionSpec("http_error", "transport", "Answer an HTTP error (problem+json), with Retry-After; phase=after runs the handler first", HttpErrorParams),
    "timeout": ActionSpec("timeout", "transport", "Hold the request for `seconds` of clock time, then drop the connection", TimeoutParams),
    "reset": ActionSpec("reset", "transport", "Reset the TCP connection (before or after the handler ran)", ResetParams),
    "malformed_body": ActionSpec("malformed_body", "transport", "Run the handler, then send a truncated, unparseable JSON body", NoParams),
}


class FaultMatch(_Strict):
    method: str | None = None
    path: str | None = None
    operation: str | None = None
    selectors: dict[str, str] = Field(default_factory=dict)


class FaultAction(_Strict):
    type: str
    params: dict[str, Any] = Field(default_factory=dict)


class FaultWindow(_Strict):
    from_: str | None = Field(default=None, alias="from")
    until: str | None = None


class FaultRuleInput(_Strict):
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    description: str | None = None
    match: FaultMatch = Field(default_factory=FaultMatch)
    action: FaultAction
    times: int | None = Field(default=None, ge=1)
    probability: float | None = Field(default=None, gt=0, le=1)
    window: FaultWindow | None = None

    @field_validator("match", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


@dataclass(slots=True)
class FaultRule:
    id: str
    action: str
    params: dict[str, Any]
    method: str | None = None
    path: str | None = None
    operation: str | None = None
    selectors: dict[str, str] = field(default_factory=dict)
    times: int | None = None
    probability: float | None = None
    window_from: float | None = None
    window_until: float | None = None
    description: str | None = None
    created_at: float = 0.0
    hits: int = 0
    rng: random.Random = field(default_factory=random.Random)

    @property
    def remaining(self) -> int | None:
        return None if self.times is None else max(0, self.times - self.hits)

    def matches(self, method: str | None, path: str | None, template: str | None,
                operation: str | None, entities: dict[str, Any] | None) -> bool:
        # A criterion the call site cannot tell (a domain decision taken off a
        # request, say) does not filter: selectors do the targeting there.
        if self.method and method and not fnmatch.fnmatchcase(method.upper(), self.method.upper()):
            return False
        if self.path and (path or template) and not any(
                p and (p == self.path or fnmatch.fnmatchcase(p, self.path)) for p in (template, path)):
            return False
        if self.operation and operation and not fnmatch.fnmatchcase(operation, self.operation):
            return False
        for key, pattern in self.selectors.items():
            value = (entities or {}).get(key)
            if value is None or not fnmatch.fnmatchcase(str(value), pattern):
                return False
        return True

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"id": self.id, "action": {"type": self.action, "params": self.params},
                               "hits": self.hits, "remaining": self.remaining,
                               "createdAt": isoformat(self.created_at)}
        match = {k: v for k, v in (("method", self.method), ("path", self.path),
                                   ("operation", self.operation)) if v}
        if self.selectors:
            match["selectors"] = self.selectors
        out["match"] = match
        if self.description:
            out["description"] = self.description
        if self.times is not None:
            out["times"] = self.times
        if self.probability is not None:
            out["probability"] = self.probability
        if self.window_from is not None or self.window_until is not None:
            out["window"] = {k: isoformat(v) for k, v in (("from", self.window_from),
                                                          ("until", self.window_until)) if v is not None}
        return out


class FaultEngine:
    """The rules of one service; ``record`` journals every application."""

    def __init__(self, *, seed: int, now: Callable[[], float],
                 record: Callable[..., Any] | None = None):
        self.seed = seed
        self._now = now
        self._record = record
        self.specs: dict[str, ActionSpec] = dict(TRANSPORT_SPECS)
        self.rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self.has_transport_rules = False

    def register(self, name: str, description: str, params: type[BaseModel] = NoParams) -> None:
        """A simulator declares a domain fault it knows how to apply."""
        if name in self.specs:
            raise ValueError(f"fault action {name!r} is already registered")
        self.specs[name] = ActionSpec(name, "domain", description, params)

    # --- administration -------------------------------------------------
    def add(self, raw: dict | FaultRuleInput) -> FaultRule:
        try:
            data = raw if isinstance(raw, FaultRuleInput) else FaultRuleInput.model_validate(raw)
        except ValidationError as exc:
            raise FaultError(_pydantic_message(exc)) from None
        spec = self.specs.get(data.action.type)
        if spec is None:
            raise FaultError(f"unknown fault action {data.action.type!r}; this service knows: "
                             + ", ".join(sorted(self.specs)))
        try:
            params = spec.params.model_validate(data.action.params).model_dump(exclude_none=True)
        except ValidationError as exc:
            raise FaultError(f"action {spec.name}: {_pydantic_message(exc)}") from None
        rule_id = data.id or f"rule-{next(self._ids)}"
        if any(r.id == rule_id for r in self.rules):
            raise FaultConflict(f"a rule with id {rule_id!r} already exists; delete it first")
        now = self._now()
        window = data.window or FaultWindow()
        window_from = _instant(window.from_, now, "window.from")
        window_until = _instant(window.until, now, "window.until")
        _check_window(window_from, window_until, now)
        rule = FaultRule(
            id=rule_id, action=spec.name, params=params, method=data.match.method,
            path=data.match.path, operation=data.match.operation, selectors=dict(data.match.selectors),
            times=data.times, probability=data.probability, description=data.description,
            window_from=window_from, window_until=window_until, created_at=now,
            # One RNG per rule, seeded by run seed and rule id: the picks do not
            # depend on which other rules exist or in what order they were added.
            rng=random.Random(f"{self.seed}:{rule_id}"),
        )
        self.rules.append(rule)
        self.has_transport_rules = any(r.action in TRANSPORT_ACTIONS for r in self.rules)
        return rule

    def add_many(self, raws: list[dict]) -> list[FaultRule]:
        added = []
        try:
            for raw in raws:
                added.append(self.add(raw))
        except FaultError:
            for rule in added:  # all or nothing
                self.remove(rule.id)
            raise
        return added

    def load_profile(self, path: str | Path) -> list[FaultRule]:
        doc = yaml.safe_load(Path(path).read_text())
        if doc is None:
            return []
        if isinstance(doc, dict) and set(doc) != {"rules"}:
            raise FaultError(f"{path}: a fault profile has one key, `rules:` (found {', '.join(map(str, doc))})")
        rules = doc["rules"] if isinstance(doc, dict) else doc
        if not isinstance(rules, list):
            raise FaultError(f"{path}: a fault profile is a list of rules or a mapping with `rules:`")
        return self.add_many(rules)

    def remove(self, rule_id: str) -> int:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        self.has_transport_rules = any(r.action in TRANSPORT_ACTIONS for r in self.rules)
        return before - len(self.rules)

    def clear(self) -> int:
        removed = len(self.rules)
        self.rules = []
        self.has_transport_rules = False
        return removed

    def reset(self) -> None:
        self.clear()
        self._ids = itertools.count(1)

    # --- application ----------------------------------------------------
    def peek(self, actions: tuple[str, ...] | str, **context: Any) -> FaultRule | None:
        """A live rule that would match, without consuming its scope (for reads)."""
        return self._find(actions, context, consume=False)

    def take(self, actions: tuple[str, ...] | str, **context: Any) -> FaultRule | None:
        """The first live rule of one of ``actions`` matching this context; consumes its scope."""
        return self._find(actions, context, consume=True)

    def take_all(self, actions: tuple[str, ...] | str, **context: Any) -> list[FaultRule]:
        """Every live rule matching (each consumed and journaled): for faults that stack,
        such as one ``low_compliance`` rule per block."""
        return list(self._matching(actions, context, consume=True))

    def _find(self, actions: tuple[str, ...] | str, context: dict[str, Any], consume: bool) -> FaultRule | None:
        if not self.rules:  # the usual case, asked several times per request: no generator
            return None
        return next(self._matching(actions, context, consume), None)

    def _matching(self, actions: tuple[str, ...] | str, context: dict[str, Any], consume: bool):
        if not self.rules:
            return
        if isinstance(actions, str):
            actions = (actions,)
        now = self._now()
        for rule in self.rules:
            if rule.action not in actions:
                continue
            if rule.times is not None and rule.hits >= rule.times:
                continue
            if rule.window_from is not None and now < rule.window_from:
                continue
            if rule.window_until is not None and now >= rule.window_until:
                continue
            if not rule.matches(context.get("method"), context.get("path"), context.get("template"),
                                context.get("operation"), context.get("entities")):
                continue
            if not consume:
                yield rule
                continue
            if rule.probability is not None and rule.rng.random() >= rule.probability:
                continue
            rule.hits += 1
            if self._record is not None:
                self._record("fault", "internal", ruleId=rule.id, method=context.get("method"),
                             path=context.get("path"), operation=context.get("operation"),
                             correlationId=context.get("correlation_id"),
                             entities=_str_entities(context.get("entities")),
                             detail={"action": rule.action, **rule.params})
            yield rule


def _instant(value: str | None, now: float, name: str) -> float | None:
    if value is None:
        return None
    try:
        instant = now + parse_duration(value[1:]) if value.startswith("+") else parse_datetime(value)
    except (ValueError, OverflowError) as exc:
        raise FaultError(f"{name}: {value!r} is neither a date-time nor an offset like +1h ({exc})") from None
    if not 0 <= instant <= MAX_TIME:
        raise FaultError(f"{name}: {value!r} is outside the clock's range (1970 to {isoformat(MAX_TIME)})")
    return instant


def _check_window(start: float | None, until: float | None, now: float) -> None:
    """Refuse a window in which the rule could never fire: the clock never moves back."""
    if until is None:
        return
    if start is not None and until <= start:
        raise FaultError(f"window: until ({isoformat(until)}) is not after from ({isoformat(start)}): "
                         "the rule could never fire")
    if until <= now:
        raise FaultError(f"window: until ({isoformat(until)}) is not after the clock's now ({isoformat(now)}): "
                         "the rule could never fire")


def _str_entities(entities: dict[str, Any] | None) -> dict[str, str] | None:
    if not entities:
        return None
    return {k: str(v) for k, v in entities.items() if v is not None}


def _pydantic_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'rule'}: {err['msg']}" for err in exc.errors())

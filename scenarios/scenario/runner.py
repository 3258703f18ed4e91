"""Run one scenario: build its world, play its steps on the clock, check what must hold.

The outcome carries what a report needs: pass or fail, the broken expectation
or step with the journal lines around it, the merged journal, virtual time
covered and wall time.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from caas_sim.simulators.client import AdminError, load_fault_profile
from caas_sim.simulators.kit.clock import DEFAULT_EPOCH, isoformat, wall_isoformat
from caas_sim.simulators.kit.durations import parse_duration

from . import timeline
from .coordinator import Coordinator, RemoteCoordinator, StackCoordinator
from .expectations import ExpectationChecks, Failed, brief, words_in
from .model import (
    Advance,
    Assert,
    AuditExpectation,
    Call,
    Check,
    FaultStep,
    Note,
    Repeat,
    Scenario,
    Until,
    Workshop,
)
from .values import MissingValue, dig, mismatches, references, resolve

#: Event-by-event steps an ``until`` may take before it is called stuck.
MAX_UNTIL_STEPS = 100_000


@dataclass
class Outcome:
    name: str
    proves: str
    result: str  # passed | failed | skipped | error | xfail (known issue) | xpass (known issue gone)
    virtual_seconds: float = 0.0
    wall_seconds: float = 0.0
    setup_seconds: float = 0.0       # of which starting the world (in-process) or resetting it (--target)
    failure: str | None = None       # the step or expectation that broke, and why
    context: list[str] = field(default_factory=list)  # the journal lines around it
    journal: list[dict] = field(default_factory=list)
    spec: str | None = None
    seed: int = 0
    unchecked: list[str] = field(default_factory=list)  # expectations this world cannot check (--target)

    @property
    def passed(self) -> bool:
        return self.result in ("passed", "skipped", "xfail")

    def to_dict(self) -> dict:
        return asdict(self)


def target_blockers(scenario: Scenario, world: RemoteCoordinator | None = None) -> str | None:
    """Why a scenario cannot run against separately started services, if it cannot; with
    ``world``, also why it cannot run in that one (what its core does not serve)."""
    if scenario.world.core:
        return "it overrides core settings (world.core): in-process only"
    if scenario.world.options:
        return "it sets simulator options (world.options): in-process only"
    if world is None:
        return None
    missing = [s for s in scenario.world.services if s not in world.urls]
    if missing:
        return f"the target has no {', '.join(missing)}"
    waits = world.wait_blocker(time_waited(scenario.steps))
    if waits:
        return waits
    if "reset" in world.core_lacks and world.played:
        return ("the core cannot be reset (no /__admin/reset) and a scenario already ran on it: run this one "
                "against a freshly started core (--core-command starts one for each scenario)")
    # Moved on since this run began, or before it (a clock shared with earlier runs stands past the
    # worlds' common start even when this run has not moved it yet).
    if scenario.world.from_start and world.now() > min(world.started, DEFAULT_EPOCH):
        return (f"it needs the world as it starts (world.from_start) and the target's clock has moved on to "
                f"{isoformat(world.now())}: run it against a freshly started world")
    return None


def time_waited(steps: list[Any]) -> float:
    """The world time ``steps`` may let pass at most: every ``advance``, every ``until``'s limit."""
    total = 0.0
    for step in steps:
        try:
            if isinstance(step, Advance):
                total += parse_duration(str(step.advance))
            elif isinstance(step, Until):
                total += parse_duration(str(step.within))
        except ValueError:
            pass  # a duration from a saved value: not known before the run
        if isinstance(step, Repeat):
            total += step.repeat * time_waited(step.steps)
    return total


async def run_in_process(scenario: Scenario, seed: int | None = None) -> Outcome:
    seed = scenario.world.seed if seed is None else seed
    keys = {actor.api_key(): {"role": actor.role, "subject": actor.subject}
            for actor in scenario.world.actors.values()}
    # A throwaway world: its SQLite file in memory-backed storage when there is some
    # (each commit's fsync on a disk costs real time, and the file dies with the scenario).
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="caas-scenario-", dir=shm) as folder:
        coordinator = StackCoordinator(services=scenario.world.services, seed=seed, folder=Path(folder),
                                       api_keys=keys, core_settings=scenario.world.core,
                                       options=scenario.world.options)
        wall = time.perf_counter()
        try:
            await coordinator.start()
            setup = time.perf_counter() - wall
        except Exception as exc:  # noqa: BLE001  (one scenario's crash is its outcome, the run goes on)
            await coordinator.stack.stop()
            return Outcome(scenario.name, scenario.proves, "error", failure=f"world: {exc}", spec=scenario.spec,
                           seed=seed, wall_seconds=time.perf_counter() - wall)
        try:
            return await Play(scenario, coordinator, seed).run(wall, setup)
        finally:
            await coordinator.close()


async def run_remote(scenario: Scenario, coordinator: RemoteCoordinator, seed: int | None = None) -> Outcome:
    seed = scenario.world.seed if seed is None else seed
    blocker = target_blockers(scenario, coordinator)
    if blocker:
        return Outcome(scenario.name, scenario.proves, "skipped", failure=blocker, spec=scenario.spec, seed=seed)
    wall = time.perf_counter()
    await coordinator.reset()
    coordinator.played += 1
    return await Play(scenario, coordinator, seed).run(wall, time.perf_counter() - wall)


class Play(ExpectationChecks):
    """One run of one scenario against a started world."""

    def __init__(self, scenario: Scenario, world: Coordinator, seed: int):
        self.scenario, self.world, self.seed = scenario, world, seed
        self.values: dict[str, Any] = {"seed": seed}
        self.journal: list[dict] = []  # the runner's own entries; simulators' are read at the end
        self.unchecked: list[str] = []
        self._cursor = 0
        source = getattr(scenario, "_source", None)
        self.folder = Path(source).parent if source else Path.cwd()

    async def run(self, wall: float, setup: float = 0.0) -> Outcome:
        start = self.world.now()
        out = Outcome(self.scenario.name, self.scenario.proves, "passed", spec=self.scenario.spec, seed=self.seed)
        failure: Failed | None = None
        try:
            await self._magic_vins()
            for rules_of, rules in self.scenario.world.faults.items():
                await self._add_faults(rules_of, [r.model_dump(exclude_none=True) for r in rules])
            for service, profiles in self.scenario.world.profiles.items():
                for profile in profiles:
                    await self._add_faults(service, load_fault_profile(self.folder / profile))
            for index, step in enumerate(self.scenario.steps, 1):
                await self._step(step, f"step {index}")
            out.journal = await self._merged_journal()
            problems = await self._check_all()
            if problems:
                failure = problems[0]
                if len(problems) > 1:
                    failure.why += "".join(f"\n  also {p}" for p in problems[1:])
        except Failed as exc:
            failure = exc
        except (MissingValue, AdminError, aiohttp.ClientError, ValueError) as exc:
            failure = Failed("run", f"{type(exc).__name__}: {exc}")
            if isinstance(exc, aiohttp.ClientConnectionError) and (code := await self.world.core_exit()) is not None:
                # the core its command started is gone: what the scenario checks was not reached
                out.result = "error"
                failure = Failed(f"the core command exited with code {code} during the scenario", failure.why)
        except Exception as exc:  # noqa: BLE001  (one scenario's crash is its outcome, the run goes on)
            out.result = "error"
            failure = Failed("run", "".join(traceback.format_exception_only(exc)).strip()
                             + "\n" + "".join(traceback.format_tb(exc.__traceback__)[-3:]))
        if not out.journal:
            try:
                out.journal = await self._merged_journal()
            except Exception:  # noqa: BLE001  (one scenario's crash is its outcome, the run goes on)
                out.journal = timeline.merged(self.journal)
        if failure is not None:
            out.result = "error" if out.result == "error" else "failed"
            out.failure = f"{failure.what}: {failure.why}"
            out.context = timeline.around(out.journal, failure.words)
        known = self.scenario.known_issue
        if known and out.result == "failed":
            out.result, out.failure = "xfail", f"known issue: {known}\n{out.failure}"
        elif known and out.result == "passed" and self.unchecked:
            out.result = "skipped"  # the defect may hide in what this world cannot check
            out.failure = f"known issue ({known}) not checkable here: {'; '.join(self.unchecked)}"
        elif known and out.result == "passed":
            out.result = "xpass"
            out.failure = f"known issue no longer reproduces ({known}): remove known_issue from the scenario"
        out.unchecked = self.unchecked
        out.virtual_seconds = self.world.now() - start
        out.wall_seconds = time.perf_counter() - wall
        out.setup_seconds = setup
        return out

    # --- values --------------------------------------------------------------
    async def _magic_vins(self) -> None:
        used = references(self.scenario.model_dump(by_alias=True))
        vins: dict[str, Any] = {}
        for service in ("iot", "vss"):
            if any(name.startswith(f"vins.{service}.") for name in used):
                async with self.world.session.get(self.world.url(service) + "/fleet/magic-vins",
                                                  headers={"X-Correlation-Id": f"{timeline.DIRECT_PREFIX}0"}) as r:
                    vins[service] = (await r.json())["vins"]
        self.values["vins"] = vins

    def _journey_words(self) -> set[str]:
        """The ids this journey saved and the magic VINs it uses: what its journal lines name."""
        used = references(self.scenario.model_dump(by_alias=True))
        words = {str(v) for k, v in self.values.items() if isinstance(v, str) and k != "vins"}
        for name in used:
            if name.startswith("vins."):
                try:
                    words.add(str(resolve("${" + name + "}", self.values)))
                except MissingValue:
                    pass
        return words

    def _resolve(self, value: Any) -> Any:
        return resolve(value, self.values)

    # --- steps ---------------------------------------------------------------
    async def _step(self, step: Any, where: str) -> None:
        if isinstance(step, Call):
            await self._call(step, where)
        elif isinstance(step, Advance):
            await self.world.advance_to(self.world.now() + parse_duration(str(step.advance)))
        elif isinstance(step, Until):
            await self._until(step, where)
        elif isinstance(step, Assert):
            wrong = await self._check(step.assert_, where)
            if wrong:
                path = self._resolve(step.assert_.get)
                raise Failed(f"{where} (assert GET {path})", "; ".join(wrong), words_in(path))
        elif isinstance(step, FaultStep):
            await self._fault(step, where)
        elif isinstance(step, Workshop):
            await self._workshop(step, where)
        elif isinstance(step, Repeat):
            for i in range(step.repeat):
                self.values["i"] = i
                for n, inner in enumerate(step.steps, 1):
                    await self._step(inner, f"{where} (repeat {i}) step {n}")
        elif isinstance(step, Note):
            self._record({"kind": "note", "text": self._resolve(step.note)})

    def _headers(self, actor: str | None, on: str, extra: dict[str, str], where: str) -> dict[str, str]:
        headers = {k: str(v) for k, v in self._resolve(extra).items()}
        if on != "core":
            headers.setdefault("X-Correlation-Id", f"{timeline.DIRECT_PREFIX}{len(self.journal) + 1}")
        if actor is not None:
            if actor not in self.scenario.world.actors:
                raise Failed(where, f"no actor {actor!r} in world.actors ({', '.join(self.scenario.world.actors)})")
            headers["Authorization"] = f"Bearer {self.scenario.world.actors[actor].api_key()}"
        return headers

    async def _request(self, method: str, on: str, path: str, actor: str | None, body: Any,
                       headers: dict[str, str], where: str, *, poll: bool = False) -> tuple[int, Any]:
        url = self.world.url(on) + path
        data = None if body is None else orjson.dumps(body)
        entry = self._record({"kind": "call", "actor": actor or "scenario", "on": on, "method": method,
                              "path": path, **({"poll": True} if poll else {})})
        if data is not None:
            headers = {**headers, "Content-Type": "application/json"}
        async def exchange() -> tuple[bytes, int]:
            async with self.world.session.request(method, url, data=data, headers=headers) as r:
                return await r.read(), r.status

        raw, status = await self.world.during(exchange())
        try:
            answer = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            answer = raw.decode(errors="replace")
        entry["status"] = status
        return status, answer

    async def _call(self, step: Call, where: str) -> None:
        method, _, path = self._resolve(step.call).partition(" ")
        method, path = method.upper(), path.strip()
        what = f"{where} ({method} {path} on {step.service})"
        headers = self._headers(step.as_, step.service, step.headers, what)
        status, answer = await self._request(method, step.service, path, step.as_, self._resolve(step.body), headers,
                                             what)
        allowed = [step.status] if isinstance(step.status, int) else step.status
        if (allowed is None and not 200 <= status < 300) or (allowed is not None and status not in allowed):
            raise Failed(what, f"answered {status}, expected {allowed or '2xx'}: {brief(answer)}",
                         words_in(path))
        if step.expect is not None:
            wrong = mismatches(answer, self._resolve(step.expect))
            if wrong:
                raise Failed(what, "the answer does not match: " + "; ".join(wrong), words_in(path))
        for name, dotted in step.save.items():
            try:
                self.values[name] = dig(answer, dotted)
            except MissingValue:
                raise Failed(what, f"cannot save {name}: the answer has no {dotted!r}: {brief(answer)}") from None

    async def _check(self, check: Check, where: str) -> list[str]:
        path = self._resolve(check.get)
        headers = self._headers(check.as_, check.service, {}, where)
        status, answer = await self._request("GET", check.service, path, check.as_, None, headers, where, poll=True)
        if status != check.status:
            return [f"GET {path} answered {status}, expected {check.status}: {brief(answer)}"]
        return mismatches(answer, self._resolve(check.match)) if check.match is not None else []

    async def _until(self, step: Until, where: str) -> None:
        deadline = self.world.now() + parse_duration(str(step.within))
        for _ in range(MAX_UNTIL_STEPS):
            wrong = await self._check(step.until, where)
            if not wrong:
                return
            if self.world.now() >= deadline:
                raise Failed(f"{where} (until GET {self._resolve(step.until.get)})",
                             f"still not true after {step.within}: " + "; ".join(wrong),
                             words_in(self._resolve(step.until.get)))
            due = await self.world.next_due()
            await self.world.advance_to(deadline if due is None or due > deadline else max(due, self.world.now()))
        raise Failed(where, f"stuck: {MAX_UNTIL_STEPS} events without the condition or the deadline")

    async def _add_faults(self, service: str, rules: list[dict]) -> None:
        added = await self.world.admin(service).add_faults(self._resolve(rules))
        for rule in added:
            self._record({"kind": "note", "text": f"fault {rule['id']} ({rule['action']['type']}) on {service}"})

    async def _fault(self, step: FaultStep, where: str) -> None:
        admin = self.world.admin(step.service)
        if step.fault == "add":
            rules = [r.model_dump(exclude_none=True) for r in ([step.rule] if step.rule else []) + (step.rules or [])]
            if step.profile:
                rules += load_fault_profile(self.folder / step.profile)
            if not rules:
                raise Failed(where, "fault add needs rule, rules or profile")
            await self._add_faults(step.service, rules)
        elif step.fault == "remove":
            if not step.id:
                raise Failed(where, "fault remove needs the rule's id")
            await admin.delete_fault(self._resolve(step.id))
            self._record({"kind": "note", "text": f"fault {step.id} removed from {step.service}"})
        else:
            await admin.clear_faults()
            self._record({"kind": "note", "text": f"faults cleared on {step.service}"})

    async def _workshop(self, step: Workshop, where: str) -> None:
        record = self._resolve(step.workshop.model_dump(exclude_none=True))
        vin = record.pop("vin")
        record.setdefault("performedAt", isoformat(self.world.now()))
        path = f"/workshop/vehicles/{vin}/services"
        headers = self._headers(None, "vss", {}, where)
        status, answer = await self._request("POST", "vss", path, "workshop", record, headers, where)
        if status != 201:
            raise Failed(f"{where} (workshop visit of {vin})", f"VSS answered {status}: {brief(answer)}", {vin})

    def _record(self, fields: dict) -> dict:
        entry = {"seq": len(self.journal) + 1, "vt": isoformat(self.world.now()), "wall": wall_isoformat(time.time()),
                 "service": timeline.SCENARIO, "direction": "out", **fields}
        self.journal.append(entry)
        return entry

    # --- expectations ------------------------------------------------------------
    async def _expectation(self, e: Any, journal: list[dict]) -> tuple[list[str], set[str]]:
        serves_audit = getattr(self.world, "serves_audit", None)
        if isinstance(e, AuditExpectation) and not e.audit.peers and serves_audit and not await serves_audit():
            self.unchecked.append("audit: the core has no /__admin/audit")
            return [], set()
        return await super()._expectation(e, journal)

    async def _merged_journal(self) -> list[dict]:
        entries = list(self.journal)
        for service in self.world.services():
            since = 0
            admin = self.world.admin(service)
            while True:
                page = await admin.journal(since, 10_000)
                # someone looking at the dashboard meanwhile changes no verdict
                entries.extend(e for e in page["entries"]
                               if not str(e.get("correlationId") or "").startswith(timeline.DASHBOARD_PREFIX))
                if len(page["entries"]) < 10_000:
                    break
                since = page["next"]
        return timeline.merged(entries)

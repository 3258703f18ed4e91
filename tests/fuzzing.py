"""What every schemathesis test module shares.

Schemas are loaded at module level (``from_fixture`` breaks on pytest 9.2,
DESIGN.md) and fuzzed against a simulator on a real socket (the
``threaded_stack`` fixture), with every default check, positive and negative
data, seeded (derandomized) so that CI sees the same cases every run.
"""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation import GenerationMode

from caas_sim.simulators.kit.contract import CONTRACTS_DIR
from caas_sim.simulators.typed_client import Admin

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def contract_schema(name: str, *, semantic: tuple[str, ...] = ()):
    """The schema of ``contracts/<name>``. ``semantic``: statuses (say "422") the contract
    gives valid-looking requests for what a schema cannot express (a date against the
    clock, a check digit, an unknown token): positive data may meet them."""
    schema = schemathesis.openapi.from_path(CONTRACTS_DIR / name)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    accepted = schema.config.checks.positive_data_acceptance
    accepted.expected_statuses = [*accepted.expected_statuses, *semantic]
    return schema


def on_stack(*services: str, seed: int = 0):
    """Run the marked test against one module-wide stack of ``services``."""
    return pytest.mark.parametrize("threaded_stack", [{"services": list(services), "seed": seed}], indirect=True,
                                   ids=["+".join(services)])


def run_stateful(schema, base_url: str, *, examples: int = 25, steps: int = 6, fresh: bool = True) -> list[dict]:
    """Follow the contract's links (create, then read, then act on what was created).

    ``fresh`` (a simulator): each scenario starts from the simulator as it started (its admin
    reset), so that what it answers depends on that scenario's requests alone. An answer that
    depended on an earlier scenario (an Idempotency-Key seen, a card stored) made a scenario
    hypothesis replays draw differently, which it refuses (FlakyStrategyDefinition, seen once
    in CI). Returns the journal entries the resets emptied (the last scenario's stay in the
    journal), in which no answer may have broken the contract."""
    schema.config.update(base_url=base_url)
    machine = schema.as_state_machine()
    emptied: list[dict] = []
    if fresh:
        class FromItsStart(machine):
            def setup(self) -> None:
                with Admin(base_url) as admin:
                    emptied.extend(e.model_dump() for e in admin.journal_entries())
                    admin.reset()
        machine = FromItsStart
    machine.run(settings=settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                                  derandomize=True, suppress_health_check=list(HealthCheck)))
    assert [e for e in emptied if e["kind"] == "violation" and e["direction"] == "out"] == []
    return emptied


def outbound_violations(stack, *services: str) -> list[dict]:
    """Answers or webhooks that broke their contract: run after the fuzzers of a module."""
    return [e for name in services for e in stack.service(name).journal.entries()
            if e["kind"] == "violation" and e["direction"] == "out"]


# --- how many cases the fuzzers generated ---------------------------------------------
# Every request schemathesis sends (single-operation tests and stateful runs alike) goes
# through its global ``before_call`` hook: counting there, per contract (its ``info.title``),
# gives the cases generated. Each test records its counts in ``user_properties`` (xdist
# sends those to the controller), and the terminal summary adds them up per contract;
# CAAS_FUZZ_COUNTS=<file> also writes them as JSON.

_generated: dict[str, int] = {}


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    title = case.operation.schema.raw_schema.get("info", {}).get("title", "?")
    _generated[title] = _generated.get(title, 0) + 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    before = dict(_generated)
    yield
    grown = {title: n - before.get(title, 0) for title, n in _generated.items() if n > before.get(title, 0)}
    if grown:
        item.user_properties.append(("fuzz_cases", {"stateful" if "stateful" in item.name else "single": grown}))


class FuzzCounts:
    """Adds up the cases of every test (in the controller under xdist) and reports them."""

    def __init__(self) -> None:
        self.totals: dict[str, dict[str, int]] = {}

    def pytest_runtest_logreport(self, report) -> None:
        if report.when != "call":
            return
        for key, value in report.user_properties:
            if key == "fuzz_cases":
                for mode, grown in value.items():
                    for title, n in grown.items():
                        per = self.totals.setdefault(title, {"single": 0, "stateful": 0})
                        per[mode] += n

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.totals:
            return
        write = terminalreporter.write_line
        write(f"schemathesis cases generated: {sum(sum(p.values()) for p in self.totals.values())} in all")
        for title, per in sorted(self.totals.items()):
            write(f"  {title}: {sum(per.values())} ({per['single']} single-operation, {per['stateful']} stateful)")
        target = os.environ.get("CAAS_FUZZ_COUNTS")
        if target:
            with open(target, "w") as out:
                json.dump(self.totals, out, indent=2, sort_keys=True)


def pytest_configure(config) -> None:
    if not config.pluginmanager.has_plugin("caas-fuzz-counts"):
        config.pluginmanager.register(FuzzCounts(), "caas-fuzz-counts")

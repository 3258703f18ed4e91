"""What every schemathesis test module shares.

Schemas are loaded at module level (``from_fixture`` breaks on pytest 9.2,
DESIGN.md) and fuzzed against a simulator on a real socket (the
``threaded_stack`` fixture), with every default check, positive and negative
data, seeded (derandomized) so that CI sees the same cases every run.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation import GenerationMode

from simulators.kit.contract import CONTRACTS_DIR

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


def run_stateful(schema, base_url: str, *, examples: int = 25, steps: int = 6) -> None:
    """Follow the contract's links (create, then read, then act on what was created)."""
    schema.config.update(base_url=base_url)
    schema.as_state_machine().run(settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, derandomize=True,
        suppress_health_check=list(HealthCheck)))


def outbound_violations(stack, *services: str) -> list[dict]:
    """Answers or webhooks that broke their contract: run after the fuzzers of a module."""
    return [e for name in services for e in stack.service(name).journal.entries()
            if e["kind"] == "violation" and e["direction"] == "out"]

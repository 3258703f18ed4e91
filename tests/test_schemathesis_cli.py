"""The schemathesis CLI, as a user runs it, passes against every shipped contract.

``schemathesis run contracts/NAME.yaml --url URL`` with no other flag reads the shipped
``schemathesis.toml`` (from the working directory: the repository root) and must exit 0
against the simulator serving that contract, against the admin protocol of a simulator,
and against the reference core given an API key (``-H "Authorization: Bearer KEY"``):
every check on, every phase (examples, coverage, fuzzing, stateful), the seed and the
number of examples from the config.

Each run gets a fresh service started with the CLI (``caas-sim serve NAME --port 0``;
the core with ``caas-sim up --ephemeral`` and ``CAAS_API_KEYS``) and stopped after it.
The whole set (18 runs: every simulator's contracts, the admin protocol of each simulator,
the core) costs about three minutes of CPU, too much for ``make test`` on two cores, which
runs a representative subset: the payment gateway (idempotent creations, stateful links,
402 and 422 refusals), the admin protocol of a registry (whose domain faults are not the
ones the examples name) and the core (an API key, the largest contract): about 40 s of
CPU. ``CAAS_ST_CLI=all`` runs every one (docs/testing.md).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from caas_sim import catalogue

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONFIG = ROOT / "schemathesis.toml"
#: The key the core is started with, and that schemathesis sends (the CLI's ``-H``).
CORE_KEY = "st-operator"
CORE_KEYS = {CORE_KEY: {"role": "operator", "subject": "operator"}}
#: schemathesis's own expected statuses of ``positive_data_acceptance``.
POSITIVE_DEFAULTS = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
#: Nothing listens there: a simulator served alone must not send its webhooks to a core
#: that may be running on the default port.
NOWHERE = "http://127.0.0.1:9/webhooks"

#: (contract, service to serve it): every simulator's contracts, the admin protocol of
#: every simulator, the core.
TARGETS: list[tuple[str, str]] = [
    *((contract, e.name) for e in catalogue.SERVICES for contract in e.contracts),
    *((catalogue.ADMIN_CONTRACT, e.name) for e in catalogue.SERVICES),
    (catalogue.CORE_CONTRACT, "core"),
]
#: What ``make test`` runs (see the module's docstring).
SUBSET = [("payments.yaml", "payments"), (catalogue.ADMIN_CONTRACT, "registry-de"), (catalogue.CORE_CONTRACT, "core")]
SELECTED = TARGETS if os.environ.get("CAAS_ST_CLI") == "all" else SUBSET


def _started(process: subprocess.Popen, service: str, log: Path, deadline: float = 60) -> str:
    """The URL of ``service`` in the table ``serve`` or ``up`` prints once listening."""
    pattern = re.compile(rf"^{re.escape(service)}\s+(http://\S+)")
    lines: list[str] = []
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if found := pattern.match(line):
            return found.group(1)
    process.kill()
    raise AssertionError(f"{service} did not start:\n{''.join(lines)}{log.read_text()}")


@contextmanager
def serving(service: str, tmp_path: Path) -> Iterator[str]:
    """A fresh ``service`` (a simulator, or the core with every simulator) on free ports."""
    env = {**os.environ, "NO_COLOR": "1"}
    if service == "core":
        env["CAAS_API_KEYS"] = json.dumps(CORE_KEYS)
        command = ["up", "--ephemeral", "--database", f"sqlite+aiosqlite:///{tmp_path / 'core.db'}",
                   "--state-file", str(tmp_path / "up.json")]
    else:
        command = ["serve", service, "--port", "0", "--webhook-url", NOWHERE]
    # Its log goes to a file: a pipe nobody reads would block a service that logs a lot.
    with open(tmp_path / "service.log", "w") as log:
        process = subprocess.Popen([str(BIN / "caas-sim"), *command], cwd=tmp_path, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=log)
    try:
        yield _started(process, service, tmp_path / "service.log")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def schemathesis_run(contract: str, url: str, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``schemathesis run contracts/<contract> --url <url> [extra]`` from the repository root."""
    # CAAS_ST_BIN: a schemathesis installed elsewhere (a team's own environment)
    command = [os.environ.get("CAAS_ST_BIN") or str(BIN / "schemathesis"), "run", f"contracts/{contract}",
               "--url", url, *extra]
    return subprocess.run(command, check=False, cwd=ROOT, env={**os.environ, "NO_COLOR": "1"}, text=True,
                          capture_output=True, timeout=timeout)


def extra_args(service: str) -> list[str]:
    return ["-H", f"Authorization: Bearer {CORE_KEY}"] if service == "core" else []


def _operation_ids() -> dict[str, set[str]]:
    """Each contract's ``info.title`` -> its operationIds (what a ``[[project]]`` block names)."""
    import yaml

    found = {}
    for path in sorted((ROOT / "contracts").glob("*.yaml")):
        doc = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        found[doc["info"]["title"]] = {op["operationId"] for item in doc["paths"].values() for op in item.values()
                                       if isinstance(op, dict) and "operationId" in op}
    return found


def test_the_config_is_schemathesis_4s_and_keeps_runs_deterministic():
    import tomllib

    from schemathesis.config import SchemathesisConfig

    SchemathesisConfig.from_path(CONFIG)  # schemathesis itself accepts it
    config = tomllib.loads(CONFIG.read_text())
    assert isinstance(config["seed"], int) and 0 < config["generation"]["max-examples"] <= 50
    assert config["cache"]["enabled"] is False and config["generation"]["database"] == "none"
    assert "checks" not in config and "phases" not in config  # every check and phase, on
    operation_ids = _operation_ids()
    for project in config["project"]:
        assert project["title"] in operation_ids, project["title"]  # else it would apply to nothing
        for operation in project["operations"]:
            named = operation["include-operation-id"]
            assert set([named] if isinstance(named, str) else named) <= operation_ids[project["title"]], named
            assert set(operation) == {"include-operation-id", "checks"}  # it widens statuses, nothing else
            for check in operation["checks"].values():  # the defaults stay: an operation only adds statuses
                assert set(check) == {"expected-statuses"} and set(POSITIVE_DEFAULTS) <= set(check["expected-statuses"])


def test_every_registry_of_the_catalogue_has_its_block_in_the_config():
    """Registries refuse requests valid by their schema with 422 (check digits, dates): a new
    country's contract needs its ``[[project]]``, which only a ``CAAS_ST_CLI=all`` run would miss."""
    import tomllib

    import yaml

    widened: dict[str, set[str]] = {}
    for project in tomllib.loads(CONFIG.read_text())["project"]:
        for operation in project["operations"]:
            named = operation["include-operation-id"]
            widened.setdefault(project["title"], set()).update([named] if isinstance(named, str) else named)
    for entry in catalogue.REGISTRY_COUNTRIES.values():
        title = yaml.safe_load((ROOT / "contracts" / entry.contract).read_text())["info"]["title"]
        assert {"createRegistration", "provideAdditionalInfo"} <= widened.get(title, set()), (
            f"schemathesis.toml has no [[project]] for {title!r} ({entry.contract}): copy a registry's block")


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("contract", "service"), SELECTED, ids=[f"{c}@{service}" for c, service in SELECTED])
def test_schemathesis_cli_passes(contract, service, tmp_path):
    with serving(service, tmp_path) as url:
        started = time.monotonic()
        result = schemathesis_run(contract, url, *extra_args(service))
        elapsed = time.monotonic() - started
    summary = re.search(r"(\d+) generated", result.stdout)
    print(f"{contract}: exit {result.returncode}, {summary.group(1) if summary else '?'} cases, {elapsed:.1f} s")
    assert result.returncode == 0, (result.stdout[-6000:] + result.stderr[-2000:]
                                    + "\nthe service's log:\n" + (tmp_path / "service.log").read_text()[-3000:])

"""The service catalogue's rows hold together, so that a mistake in a new row fails here by name.

Everything else trusts the catalogue (the stack imports ``module``, the CLI serves
``contract``, ``up`` binds ``port``): a wrong module or contract name, a port taken by
another service, the sink or the dashboard, or a second registry for one country would
otherwise surface as a traceback at start-up, a contract served under the wrong name, or
a service silently missing.
"""

from __future__ import annotations

import importlib

import pytest
import yaml

from caas_sim import catalogue
from caas_sim.scenarios.dashboard.app import DASHBOARD_PORT

NAMES = [e.name for e in catalogue.SERVICES]


@pytest.mark.parametrize("entry", catalogue.SERVICES, ids=NAMES)
def test_a_row_names_its_module_and_the_module_agrees(entry):
    module = importlib.import_module(entry.module)
    assert callable(getattr(module, "create_app", None)), f"{entry.module} has no create_app(config)"
    assert (module.NAME, module.CONTRACT) == (entry.name, entry.contract), (
        f"{entry.module} says NAME={module.NAME!r}, CONTRACT={module.CONTRACT!r}; its catalogue row says "
        f"{entry.name!r}, {entry.contract!r}")


@pytest.mark.parametrize("entry", catalogue.SERVICES, ids=NAMES)
def test_a_rows_contracts_are_shipped(entry):
    missing = [c for c in entry.contracts if not (catalogue.CONTRACTS_DIR / c).is_file()]
    assert missing == [], f"{entry.name}: no {missing} in contracts/"


def test_every_shipped_contract_is_served_by_someone():
    """A contract no row names is served by nothing (and fuzzed by nothing)."""
    served = {c for e in catalogue.SERVICES for c in e.contracts} | {catalogue.CORE_CONTRACT, catalogue.ADMIN_CONTRACT}
    assert {p.name for p in catalogue.CONTRACTS_DIR.glob("*.yaml")} - served == set()


def test_ports_are_unique_and_between_the_core_and_the_sink():
    """``--port-base N`` moves every port by the same offset and must leave room for the sink."""
    ports = [e.port for e in catalogue.SERVICES]
    assert len(set(ports)) == len(ports), f"two services share a port: {sorted(ports)}"
    assert all(catalogue.CORE_PORT < p < catalogue.SINK_PORT and p != DASHBOARD_PORT for p in ports), ports


def test_names_and_settings_are_unique():
    assert len(catalogue.BY_NAME) == len(catalogue.SERVICES)
    assert len({e.setting for e in catalogue.SERVICES}) == len(catalogue.SERVICES)  # CAAS_UPSTREAMS__<SETTING>


def test_one_registry_per_country_and_its_module_is_of_that_country():
    registries = [e for e in catalogue.SERVICES if e.country]
    assert len(catalogue.REGISTRY_COUNTRIES) == len(registries), "two registries for one country: one is dropped"
    for entry in registries:
        country = importlib.import_module(entry.module).COUNTRY
        assert (country.service, country.iso) == (entry.name, entry.country), entry.name


def test_every_webhook_path_is_a_receiver_of_the_core_contract():
    paths = yaml.safe_load((catalogue.CONTRACTS_DIR / catalogue.CORE_CONTRACT).read_text())["paths"]
    for name, path in catalogue.WEBHOOK_SENDERS.items():
        assert "post" in paths.get(path, {}), f"{name} sends to {path}, which contracts/core.yaml does not receive"

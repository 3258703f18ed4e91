"""The service catalogue: the one table of the external systems this project simulates.

Everything that enumerates services derives from it: the stack and the CLI (module, port),
the scenario schema's enumerations, the core's upstream settings and webhook receivers,
and the tests' parametrisations. Adding a simulator or a country is one row here (a
registry's with its ``country``) besides its module and contract: the whole checklist is
"Adding a service" in docs/architecture.md, and ``tests/test_catalogue.py`` checks a row.

A leaf module: it imports nothing of the project, so the simulators, the core and the
harness can all read it without depending on one another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The OpenAPI contracts: ``contracts/`` of the repository, which an installed package carries
#: inside (``caas_sim/contracts`` is a link to it in the repository, the files in a wheel).
CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
#: The schemathesis configuration that goes with them (a link to the repository's too).
SCHEMATHESIS_CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    #: The service's name everywhere: CLI, scenarios, journals, ``serve NAME``.
    name: str
    #: The module with the simulator's ``create_app`` (and ``NAME``, ``CONTRACT``).
    module: str
    #: Its OpenAPI contract in ``contracts/`` (a service may have more: see ``contracts``).
    contract: str
    #: Its port when started with the defaults (``caas-sim up``, ``serve``).
    port: int
    #: Where a core receives the webhooks this service sends (``contracts/core.yaml``);
    #: None: it sends none.
    webhook_path: str | None = None
    #: The ISO country whose authority it is (registries only).
    country: str | None = None
    #: Further contracts it serves beside ``contract``.
    more_contracts: tuple[str, ...] = ()

    @property
    def setting(self) -> str:
        """Its field in the core's ``upstreams`` settings (``CAAS_UPSTREAMS__<SETTING>``)."""
        return self.name.replace("-", "_")

    @property
    def default_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def contracts(self) -> tuple[str, ...]:
        return (self.contract, *self.more_contracts)


SERVICES: tuple[ServiceEntry, ...] = (
    ServiceEntry("factory", "caas_sim.simulators.factory.api", "factory.yaml", 8101, "/caas/webhooks/factory"),
    ServiceEntry("vss", "caas_sim.simulators.vss.api", "vss.yaml", 8102, more_contracts=("vss-workshop.yaml",)),
    ServiceEntry("iot", "caas_sim.simulators.iot.api", "iot.yaml", 8103, "/caas/webhooks/ota-status"),
    ServiceEntry("payments", "caas_sim.simulators.payments.api", "payments.yaml", 8104, "/caas/webhooks/payments"),
    ServiceEntry("registry-es", "caas_sim.simulators.registries.es", "registry-es.yaml", 8111, country="ES"),
    ServiceEntry("registry-fr", "caas_sim.simulators.registries.fr", "registry-fr.yaml", 8112, country="FR"),
    ServiceEntry("registry-de", "caas_sim.simulators.registries.de", "registry-de.yaml", 8113, country="DE"),
    ServiceEntry("registry-uk", "caas_sim.simulators.registries.uk", "registry-uk.yaml", 8114, "/caas/webhooks/registry-uk",
                 country="GB"),
)
BY_NAME: dict[str, ServiceEntry] = {entry.name: entry for entry in SERVICES}
NAMES: tuple[str, ...] = tuple(BY_NAME)
#: The national registries, by the ISO country of their authority.
REGISTRY_COUNTRIES: dict[str, ServiceEntry] = {e.country: e for e in SERVICES if e.country}
#: The services that send webhooks to a core, by name.
WEBHOOK_SENDERS: dict[str, str] = {e.name: e.webhook_path for e in SERVICES if e.webhook_path}
#: The harness's own services beside the simulators.
CORE_PORT = 8000
SINK_PORT = 8199
#: Contracts that are not one simulator's: the core's API and the admin protocol all speak.
CORE_CONTRACT = "core.yaml"
ADMIN_CONTRACT = "admin.yaml"


def default_webhook_url(name: str) -> str | None:
    """Where ``serve NAME`` sends its webhooks unless told otherwise: a core on its default port."""
    path = entry(name).webhook_path
    return None if path is None else f"http://127.0.0.1:{CORE_PORT}{path}"


def entry(name: str) -> ServiceEntry:
    """The row of ``name``; a KeyError naming the known services otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(NAMES)}") from None

"""What the locustfiles share: their options, the core under test, Standard Webhooks
signing, the fleet's vehicles.

Options are locust command-line options (also settable as environment variables and
in the web UI), so every locustfile runs with plain ``locust -f`` as well as under
``caas-sim load``; locust sends them from the master to its workers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache

import gevent
import locust  # noqa: F401  first: gevent must patch ssl before anything imports it
import orjson
import requests
from locust import events
from standardwebhooks.webhooks import Webhook

from caas_sim.loadtests import target as target_mod
from caas_sim.simulators.fleet import ConnectivityKind, Fleet


@events.init.add_listener
def _fresh_loop_time(**_) -> None:
    # gevent's loop caches "now": after a long blocking start (imports, schemas compiled on a
    # loaded machine) a --run-time timer armed from the stale time would fire at once.
    gevent.get_hub().loop.update_now()


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("caas-sim")
    group.add_argument("--caas-config", env_var="CAAS_LOAD_CONFIG", default="",
                       help="TOML file describing the core under test (receivers, secrets, keys, vehicles, "
                            "purchase); the reference core's values otherwise")
    group.add_argument("--caas-api-key", env_var="CAAS_LOAD_API_KEY", default=None,
                       help="customer API key of the core (its customer id: --caas-customer); overrides the config")
    group.add_argument("--caas-customer", env_var="CAAS_LOAD_CUSTOMER", default=None)
    group.add_argument("--caas-webhook-secret", env_var="CAAS_LOAD_WEBHOOK_SECRET", default=None,
                       help="whsec_ secret the core verifies every sender's webhooks with; overrides the config")
    group.add_argument("--caas-duplicate-share", type=float, env_var="CAAS_LOAD_DUPLICATE_SHARE", default=0.05,
                       help="share of webhooks delivered twice (the same webhook-id, re-signed)")
    group.add_argument("--caas-reorder-share", type=float, env_var="CAAS_LOAD_REORDER_SHARE", default=0.05,
                       help="share of webhooks held back and delivered after the next one")
    group.add_argument("--caas-iot-url", env_var="CAAS_LOAD_IOT_URL", default="",
                       help="the IoT simulator (its admin routes), to set the fault rate")
    group.add_argument("--caas-fault-rate", type=float, env_var="CAAS_LOAD_FAULT_RATE", default=0.0,
                       help="share of OTA attempts that fail on the IoT simulator (vehicle offline or "
                            "activation failed)")
    group.add_argument("--caas-seed", type=int, env_var="CAAS_LOAD_SEED", default=0)
    group.add_argument("--caas-poll-interval", type=float, env_var="CAAS_LOAD_POLL_INTERVAL", default=0.25,
                       help="seconds between two looks at a purchase waiting for activation")
    group.add_argument("--caas-activation-timeout", type=float, env_var="CAAS_LOAD_ACTIVATION_TIMEOUT",
                       default=120.0, help="wall seconds after which a purchase not yet ACTIVE counts as failed")
    group.add_argument("--caas-fail-fast", type=float, env_var="CAAS_LOAD_FAIL_FAST", default=5.0,
                       help="stop the run (exit 1) when every request of its first this many seconds failed; 0: never")
    group.add_argument("--caas-summary", env_var="CAAS_LOAD_SUMMARY", default="",
                       help="write the run's figures as JSON here at the end (HTTP requests and business "
                            "metrics apart)")


def options(environment):
    """The options as locust parsed them; their defaults (and CAAS_LOAD_* variables) when it
    parsed no command line, as for a user class run from a library: one place for defaults."""
    if environment is not None and environment.parsed_options is not None:
        return environment.parsed_options
    from locust.argument_parser import get_parser

    return get_parser().parse_args([])


def ota_fault_rules(rate: float) -> list[dict]:
    """Rules of the IoT simulator failing ``rate`` of the OTA attempts: half with the vehicle
    offline, half with the activation failed (the core's retry policy then shows)."""
    if rate <= 0:
        return []
    match = {"method": "POST", "path": "/ota/activate"}
    return [{"id": "load-offline", "match": match, "action": {"type": "vehicle_offline"}, "probability": rate / 2},
            {"id": "load-failed", "match": match, "probability": rate / 2,
             "action": {"type": "activation_failed", "params": {"errorCode": "ECU_ERROR"}}}]


def set_faults(iot_url: str, rules: list[dict]) -> None:
    """Replace the IoT simulator's fault rules with ``rules`` (admin protocol)."""
    base = iot_url.rstrip("/")
    requests.delete(f"{base}/__admin/faults", timeout=10)
    if rules:
        requests.post(f"{base}/__admin/faults", json={"rules": rules}, timeout=10).raise_for_status()


def sign(secret: str, webhook_id: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, signed now (wall time, as the spec wants)."""
    now = datetime.fromtimestamp(int(time.time()), tz=UTC)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(webhook_id, now, body.decode()),
            "Content-Type": "application/json"}


def dumps(value) -> bytes:
    return orjson.dumps(value)


@cache
def _fleet(seed: int) -> Fleet:
    return Fleet(seed)


@cache
def _target(config: str, api_key: str | None, customer: str | None, dealership_key: str | None,
            secret: str | None) -> target_mod.LoadTarget:
    described = target_mod.load(config)
    return described.with_overrides(secrets={None: secret} if secret else None,
                                    keys={"customer": api_key, "customer_id": customer, "dealership": dealership_key})


def target(environment) -> target_mod.LoadTarget:
    """The core under test: ``--caas-config`` (or the reference core) with the options on top."""
    o = options(environment)
    return _target(o.caas_config, o.caas_api_key, o.caas_customer, getattr(o, "caas_dealership_key", None),
                   o.caas_webhook_secret)


#: Locust processes of one run whose vehicles never meet (see ``vehicle_stream``).
MAX_PROCESSES = 16


def vehicle_stream(environment, *, always_online: bool) -> Iterator[object]:
    """The seeded fleet's vehicles (non-magic, with a feature installed) for this locust
    process, lazily, each once, within the target's vehicle range: only the always-online
    ones when failures must come from the test's own fault rate alone, every kind of
    connectivity otherwise (a realistic fleet: sleeping, flaky, offline vehicles too).

    Process ``worker`` takes every ``MAX_PROCESSES``-th index from its own offset, so two
    processes never use one vehicle, and its users share the stream: however many users a
    process runs, each vehicle is used once."""
    worker = getattr(environment.runner, "worker_index", 0) or 0
    if not 0 <= worker < MAX_PROCESSES:
        raise ValueError(f"worker index {worker}: at most {MAX_PROCESSES} locust processes per run")
    fleet, vehicles = _fleet(options(environment).caas_seed), target(environment).vehicles
    for index in range(vehicles.first + worker, min(fleet.size, vehicles.first + vehicles.count), MAX_PROCESSES):
        profile = fleet.profile_at(index)
        if profile.magic is None and profile.features and (
                not always_online or profile.connectivity is ConnectivityKind.ALWAYS_ONLINE):
            yield profile

"""What the locustfiles share: their options, Standard Webhooks signing, fleet VINs.

Options are locust command-line options (also settable as environment variables and
in the web UI), so every locustfile runs with plain ``locust -f`` as well as under
``caas-sim load``; locust sends them from the master to its workers.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache

import gevent
import locust  # noqa: F401  first: gevent must patch ssl before anything imports it
import orjson
from locust import events
from standardwebhooks.webhooks import Webhook

from caas_sim.simulators.fleet import ConnectivityKind, Fleet

DEVELOPMENT_SECRET = "whsec_Y2Fhcy1zaW0tZGV2ZWxvcG1lbnQtc2VjcmV0LTAwMDA="  # caas_core.settings.DEVELOPMENT_SECRET
#: Receiver path on the core -> the contract and webhook whose payload it takes.
RECEIVERS = {"ota-status": ("iot", "otaStatus"), "payments": ("payments", "paymentSettlement"),
             "factory": ("factory", "orderStatus")}


@events.init.add_listener
def _fresh_loop_time(**_) -> None:
    # gevent's loop caches "now": after a long blocking start (imports, schemas compiled on a
    # loaded machine) a --run-time timer armed from the stale time would fire at once.
    gevent.get_hub().loop.update_now()


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("caas-sim")
    group.add_argument("--caas-api-key", env_var="CAAS_LOAD_API_KEY", default="dev-customer",
                       help="customer API key of the core (its customer id: --caas-customer)")
    group.add_argument("--caas-customer", env_var="CAAS_LOAD_CUSTOMER", default="c-1")
    group.add_argument("--caas-webhook-secret", env_var="CAAS_LOAD_WEBHOOK_SECRET", default=DEVELOPMENT_SECRET,
                       help="whsec_ secret the core verifies webhooks with")
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


def options(environment):
    """The options as locust parsed them; their defaults (and CAAS_LOAD_* variables) when it
    parsed no command line, as for a user class run from a library: one place for defaults."""
    if environment is not None and environment.parsed_options is not None:
        return environment.parsed_options
    from locust.argument_parser import get_parser

    return get_parser().parse_args([])


def sign(secret: str, webhook_id: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, signed now (wall time, as the spec wants)."""
    now = datetime.fromtimestamp(int(time.time()), tz=UTC)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(webhook_id, now, body.decode()),
            "Content-Type": "application/json"}


def dumps(value) -> bytes:
    return orjson.dumps(value)


_vin_counter = itertools.count()


@cache
def _fleet(seed: int) -> Fleet:
    return Fleet(seed)


#: Locust processes of one run whose vehicles never meet (see ``online_vins``).
MAX_PROCESSES = 16
#: Fleet indexes below this are left to scenarios and manual runs.
FIRST_LOAD_VEHICLE = 10_000


def online_vins(seed: int, worker: int) -> Iterator[str]:
    """Always-online, non-magic vehicles of the seeded fleet for locust process ``worker``
    (failures then come only from the fault rate the test sets), lazily, each once.

    Process ``worker`` takes every ``MAX_PROCESSES``-th index from its own offset, so two
    processes never buy for one vehicle, and its users share the stream: however many
    users a process runs, each vehicle is bought once. (Slices per user ran past the
    fleet's end for the users of a second worker process.)"""
    if not 0 <= worker < MAX_PROCESSES:
        raise ValueError(f"worker index {worker}: at most {MAX_PROCESSES} locust processes per run")
    fleet = _fleet(seed)
    for index in range(FIRST_LOAD_VEHICLE + worker, fleet.size, MAX_PROCESSES):
        profile = fleet.profile_at(index)
        if profile.connectivity is ConnectivityKind.ALWAYS_ONLINE and profile.magic is None:
            yield profile.vin

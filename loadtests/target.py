"""What the load tests need to know about the core under test, with the reference core's
values as defaults: its webhook receivers and the secrets they verify with, its API keys,
the fleet's vehicles the run may use, and the shape of its OTA purchase.

A core written by another team states its differences in a small TOML file (every table and
key optional; docs/load-testing.md shows one)::

    [keys]
    customer = "load-customer"

    [receivers.iot]
    path = "/hooks/iot-status"
    secret = "whsec_..."

    [purchase]
    path = "/v2/vehicles/{vin}/orders"
    body = {product = "{serviceId}", card = "tok_visa"}

``caas-sim load --config FILE`` reads it (its options override it), and so does a plain
``locust -f`` run given ``--caas-config FILE``. No gevent-sensitive import here: the CLI
reads it in a process locust never patches.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from caas_sim import catalogue
from caas_sim.simulators.kit.webhooks import DEFAULT_SECRET

#: The secret the simulators sign with and the reference core verifies with out of the box.
DEVELOPMENT_SECRET = DEFAULT_SECRET
#: Fleet indexes below this are left to scenarios and manual runs.
FIRST_LOAD_VEHICLE = 10_000
#: The webhook senders the load tests imitate, and the webhook of each contract they send.
SENT_WEBHOOKS = {"iot": "otaStatus", "payments": "paymentSettlement", "factory": "orderStatus"}
#: A ``{name}`` placeholder of the purchase's paths and body.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")


class TargetError(ValueError):
    """A target description that cannot be used, said in one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Receiver(_Strict):
    path: str
    secret: str = DEVELOPMENT_SECRET

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"a receiver path starts with '/': {value!r}")
        return value

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: str) -> str:
        if not value.startswith("whsec_") or len(value) < 10:
            raise ValueError("a webhook secret is whsec_ then base64")
        return value


def _reference_receivers() -> dict[str, Receiver]:
    return {name: Receiver(path=catalogue.WEBHOOK_SENDERS[name]) for name in SENT_WEBHOOKS}


class Keys(_Strict):
    customer: str = "dev-customer"             # a customer's API key
    customer_id: str = "c-1"                   # the customer that key acts for
    dealership: str = "dev-dealership"         # a dealership's API key (sales, day)


class Vehicles(_Strict):
    """The fleet indexes the run may use: ``first`` to ``first + count - 1``."""
    first: int = Field(default=FIRST_LOAD_VEHICLE, ge=0)
    count: int = Field(default=1_000_000, ge=16)


class Purchase(_Strict):
    """The OTA purchase of the core's API (``ota``, ``day``). Strings of ``body`` may hold
    ``{vin}``, ``{serviceId}`` and ``{customerId}``; with no ``body`` it is generated from
    the reference core's contract (contracts/core.yaml)."""
    path: str = "/customers/{customerId}/vehicles/{vin}/purchases"
    body: dict[str, Any] | None = None
    services: tuple[str, ...] = ("heated-seats", "premium-audio")
    created_status: int = 201
    id_field: str = "purchaseId"
    status_path: str = "/purchases/{purchaseId}"
    status_field: str = "status"
    active: tuple[str, ...] = ("ACTIVE",)
    #: Statuses after which a purchase will never become active.
    ended: tuple[str, ...] = ("REFUNDED", "ACTIVATION_FAILED", "FAILED", "WITHDRAWN", "CANCELLED")
    #: Timestamps of the purchase view whose difference is the activation on the core's clock;
    #: absent fields: only the observed (wall) time is measured.
    created_field: str = "createdAt"
    delivered_field: str = "deliveredAt"

    @field_validator("path")
    @classmethod
    def _path_placeholders(cls, value: str) -> str:
        return _only_placeholders(value, {"customerId", "vin"})

    @field_validator("body")
    @classmethod
    def _body_placeholders(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        _only_placeholders(json.dumps(value), {"customerId", "vin", "serviceId"})
        return value

    @model_validator(mode="after")
    def _status_path_placeholders(self) -> Purchase:
        try:
            _only_placeholders(self.status_path, {self.id_field, "customerId"})
        except ValueError as exc:
            raise ValueError(f"status_path: {exc}") from None
        return self


def _only_placeholders(text: str, known: set[str]) -> str:
    """``text``, whose ``{name}`` placeholders are all ``known``: another would be sent as it is."""
    unknown = sorted(set(_PLACEHOLDER.findall(text)) - known)
    if unknown:
        raise ValueError(f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)} in {text!r}; "
                         f"known here: {', '.join('{' + k + '}' for k in sorted(known))}")
    return text


class LoadTarget(_Strict):
    receivers: dict[str, Receiver] = Field(default_factory=_reference_receivers)
    #: The senders ``webhooks`` imitates: leave out one whose webhooks the core does not receive.
    senders: tuple[str, ...] = tuple(SENT_WEBHOOKS)
    keys: Keys = Keys()
    vehicles: Vehicles = Vehicles()
    purchase: Purchase = Purchase()

    @model_validator(mode="before")
    @classmethod
    def _receivers_over_the_reference(cls, data: Any) -> Any:
        """A file naming one receiver keeps the reference paths of the others."""
        if isinstance(data, dict) and isinstance(data.get("receivers"), dict):
            unknown = sorted(set(data["receivers"]) - set(SENT_WEBHOOKS))
            if unknown:
                raise ValueError(f"unknown webhook sender(s) {unknown}; the load tests send as: "
                                 f"{', '.join(SENT_WEBHOOKS)}")
            merged = {name: receiver.model_dump() for name, receiver in _reference_receivers().items()}
            for name, given in data["receivers"].items():
                merged[name] = {**merged[name], **given} if isinstance(given, dict) else given
            data = {**data, "receivers": merged}
        return data

    @field_validator("senders")
    @classmethod
    def _known_senders(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(SENT_WEBHOOKS))
        if unknown or not value:
            raise ValueError(f"{'unknown sender(s) ' + str(unknown) if unknown else 'no sender'}; the load tests "
                             f"send as: {', '.join(SENT_WEBHOOKS)}")
        return value

    def with_overrides(self, *, receivers: dict[str, str] | None = None, secrets: dict[str | None, str] | None = None,
                       keys: dict[str, str | None] | None = None, vehicles: tuple[int, int] | None = None,
                       senders: tuple[str, ...] | None = None) -> LoadTarget:
        """This target with command-line values on top (a ``None`` secret key: every sender)."""
        data = self.model_dump()
        if senders is not None:
            data["senders"] = senders
        for name, path in (receivers or {}).items():
            data["receivers"][name]["path"] = path
        for name, secret in sorted((secrets or {}).items(), key=lambda item: item[0] is not None):
            for receiver in ([name] if name else list(data["receivers"])):
                data["receivers"][receiver]["secret"] = secret
        data["keys"].update({k: v for k, v in (keys or {}).items() if v is not None})
        if vehicles is not None:
            data["vehicles"] = {"first": vehicles[0], "count": vehicles[1]}
        return parse(data, "the options")

    def public(self) -> dict[str, Any]:
        """For reports: everything but the secrets and keys (only whether each is the default)."""
        data = self.model_dump(mode="json")
        for receiver in data["receivers"].values():
            receiver["secret"] = "development" if receiver["secret"] == DEVELOPMENT_SECRET else "own (not shown)"
        data["keys"] = {name: "default" if value == getattr(Keys(), name) else "own (not shown)"
                        for name, value in data["keys"].items()}
        return data


def parse(data: dict[str, Any], origin: str) -> LoadTarget:
    try:
        return LoadTarget.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise TargetError(f"{origin}: {where}: {first['msg']}{more}") from None


def load(path: str | Path | None) -> LoadTarget:
    """The target a TOML (or JSON) file describes; the reference core's without a file."""
    if not path:
        return LoadTarget()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TargetError(f"cannot read the target description {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise TargetError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
    return parse(data, str(path))


def fill(template: Any, values: dict[str, str]) -> Any:
    """``template`` with ``{name}`` placeholders in its strings replaced (a purchase body)."""
    if isinstance(template, str):
        for name, value in values.items():
            template = template.replace("{" + name + "}", value)
        return template
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, values) for value in template]
    return template

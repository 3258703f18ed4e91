"""Service catalogue and configuration repository.

Each optional service is an ``ServiceOffer``: the feature flags and parameters pushed to
the vehicle through the API IoT (``POST /ota/activate`` ``configuration``), its price per
duration type, and, when it is maintenance-dependent, the functional blocks it needs and
the minimum compliance of each (configurable per service; a block passes when its
``compliancePercent`` is **at least** the threshold).

Durations (the IoT contract's ``DurationType``):

- ``TEMPORARY``: paid once, active ``temporary_days`` days, then deactivated at expiry.
- ``PERMANENT``: paid once, active for the life of the vehicle.
- ``SUBSCRIPTION``: monthly price, post-paid at month end (mes vencido), auto-renewed.

``Catalogue.default()`` is a realistic set of services; ``Catalogue.from_dict`` builds
one from settings (validated with pydantic) or overrides some fields of a base catalogue.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from .blocks import Block
from .money import CURRENCIES, Currency, Money

DAY = 86_400.0

#: The optional features pre-installed in every vehicle's firmware (the IoT fleet's list).
FEATURE_FLAGS: frozenset[str] = frozenset({
    "performance_boost", "adaptive_suspension", "sport_mode", "track_mode",
    "launch_control", "extended_range", "heated_seats", "premium_audio",
    "matrix_headlights", "remote_parking", "autopilot_plus", "winter_package",
})

_SERVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")   # IoT contract ServiceId
_PARAM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")        # IoT contract parameter names

Scalar = str | int | float | bool


class DurationType(StrEnum):
    TEMPORARY = "TEMPORARY"
    PERMANENT = "PERMANENT"
    SUBSCRIPTION = "SUBSCRIPTION"


class Requirement(NamedTuple):
    """A maintenance requirement: ``block`` must be at least ``min_pct`` % compliant."""
    block: Block
    min_pct: int


class CatalogueError(ValueError):
    """A service definition is invalid (the message names the service and the problem)."""


class UnknownService(KeyError):
    def __str__(self) -> str:
        return f"no service {self.args[0]!r} in the catalogue"


class DurationNotOffered(ValueError):
    pass


def isoformat(t: float) -> str:
    """Epoch seconds as the contracts' ISO-8601 UTC instant (``2026-01-05T08:00:00.000Z``)."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ServiceOffer:
    service_id: str
    name: str
    feature_flags: tuple[str, ...]
    parameters: Mapping[str, Scalar]
    prices: Mapping[DurationType, Money]
    temporary_days: int | None = None
    requirements: tuple[Requirement, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        def bad(msg: str) -> CatalogueError:
            return CatalogueError(f"service {self.service_id!r}: {msg}")

        if not isinstance(self.service_id, str) or not _SERVICE_ID.match(self.service_id):
            raise CatalogueError(f"invalid service id {self.service_id!r} (IoT ServiceId pattern)")
        if not self.name:
            raise bad("a name is required")
        flags = tuple(self.feature_flags)
        if not flags:
            raise bad("at least one feature flag is required")
        if len(set(flags)) != len(flags):
            raise bad(f"duplicate feature flags {flags}")
        unknown = [f for f in flags if f not in FEATURE_FLAGS]
        if unknown:
            raise bad(f"unknown feature flags {unknown} (allowed: {sorted(FEATURE_FLAGS)})")
        params = dict(self.parameters)
        for k, v in params.items():
            if not isinstance(k, str) or not _PARAM_NAME.match(k):
                raise bad(f"invalid parameter name {k!r}")
            if not isinstance(v, (str, int, float, bool)):
                raise bad(f"parameter {k!r} must be a scalar, got {type(v).__name__}")
            if isinstance(v, str) and len(v) > 256:
                raise bad(f"parameter {k!r} is longer than 256 characters")
        prices = {DurationType(d): m for d, m in dict(self.prices).items()}
        if not prices:
            raise bad("at least one price is required")
        for d, m in prices.items():
            if not isinstance(m, Money):
                raise bad(f"price for {d} must be Money")
            if m.minor <= 0:
                raise bad(f"price for {d} must be positive, got {m}")
        if len({m.currency for m in prices.values()}) > 1:
            raise bad("all prices of a service must be in one currency")
        if DurationType.TEMPORARY in prices:
            if type(self.temporary_days) is not int or self.temporary_days <= 0:
                raise bad("a TEMPORARY price needs temporary_days > 0")
        elif self.temporary_days is not None:
            raise bad("temporary_days given but no TEMPORARY price")
        reqs = tuple(Requirement(Block.parse(b), p) for b, p in self.requirements)
        if len({r.block for r in reqs}) != len(reqs):
            raise bad("a block may appear only once in the requirements")
        for r in reqs:
            if type(r.min_pct) is not int or not 0 <= r.min_pct <= 100:
                raise bad(f"threshold of {r.block} must be an integer percentage 0-100, got {r.min_pct!r}")
        object.__setattr__(self, "feature_flags", flags)
        object.__setattr__(self, "parameters", MappingProxyType(params))
        object.__setattr__(self, "prices", MappingProxyType(prices))
        object.__setattr__(self, "requirements", reqs)

    def __hash__(self) -> int:
        return hash(self.service_id)

    @property
    def maintenance_dependent(self) -> bool:
        return bool(self.requirements)

    @property
    def currency(self) -> Currency:
        return next(iter(self.prices.values())).currency

    @property
    def durations(self) -> tuple[DurationType, ...]:
        return tuple(d for d in DurationType if d in self.prices)

    def price_for(self, duration_type: DurationType | str) -> Money:
        """The price of one purchase (TEMPORARY, PERMANENT) or of one month (SUBSCRIPTION)."""
        d = DurationType(duration_type)
        try:
            return self.prices[d]
        except KeyError:
            offered = ", ".join(self.durations)
            raise DurationNotOffered(f"{self.name} is not offered as {d} (offered: {offered})") from None

    def expiry_for(self, duration_type: DurationType | str, now: float) -> float | None:
        """When a service delivered from ``now`` expires: ``now + temporary_days`` for TEMPORARY
        (sold for its period of use: the core passes the time of the push that delivers it),
        None for PERMANENT and SUBSCRIPTION (a subscription ends only when cancelled, and is
        billed from its delivery)."""
        d = DurationType(duration_type)
        self.price_for(d)  # offered?
        if d is DurationType.TEMPORARY:
            assert self.temporary_days is not None
            return now + self.temporary_days * DAY
        return None

    def shared_features(self, other: ServiceOffer) -> tuple[str, ...]:
        """The feature flags this service switches on that ``other`` switches on too: a vehicle
        holding one of them cannot be sold the other (switching either off later would switch
        off what the customer still pays for)."""
        return tuple(f for f in self.feature_flags if f in other.feature_flags)

    def ota_configuration(self) -> dict[str, Any]:
        """The ``configuration`` of ``POST /ota/activate`` (IoT contract)."""
        body: dict[str, Any] = {"featureFlags": list(self.feature_flags)}
        if self.parameters:
            body["parameters"] = dict(self.parameters)
        return body

    def ota_duration(self, duration_type: DurationType | str, now: float) -> dict[str, Any]:
        """The ``duration`` of ``POST /ota/activate`` (IoT contract) for a push at ``now``: the
        vehicle's own expiry, the one the core bills once the push delivers."""
        d = DurationType(duration_type)
        expiry = self.expiry_for(d, now)
        if d is DurationType.TEMPORARY:
            assert expiry is not None
            return {"type": d.value, "expiryDate": isoformat(expiry)}
        if d is DurationType.SUBSCRIPTION:
            return {"type": d.value, "autoRenewal": True}
        return {"type": d.value}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "service_id": self.service_id,
            "name": self.name,
            "feature_flags": list(self.feature_flags),
            "parameters": dict(self.parameters),
            "prices": {d.value: m.to_json() for d, m in self.prices.items()},
            "requirements": {r.block.value: r.min_pct for r in self.requirements},
        }
        if self.description:
            out["description"] = self.description
        if self.temporary_days is not None:
            out["temporary_days"] = self.temporary_days
        return out


def is_expired(expires_at: float | None, now: float) -> bool:
    """A temporary service deactivates at its expiry (inclusive); None never expires."""
    return expires_at is not None and now >= expires_at


# ---------------------------------------------------------------------------------------
# Configuration (pydantic: validation of settings only)

class _MoneyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: StrictInt = Field(gt=0)
    currency: Currency


class _OfferConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service_id: StrictStr
    name: StrictStr = Field(min_length=1, max_length=128)
    description: StrictStr = ""
    feature_flags: list[StrictStr] = Field(min_length=1, max_length=32)
    parameters: dict[StrictStr, StrictBool | StrictInt | StrictFloat | StrictStr] = Field(default_factory=dict)
    prices: dict[DurationType, StrictInt | _MoneyConfig] = Field(min_length=1)
    temporary_days: StrictInt | None = None
    requirements: dict[StrictStr, StrictInt] = Field(default_factory=dict)

    def to_offer(self, currency: Currency) -> ServiceOffer:
        prices = {
            d: Money(p, currency) if isinstance(p, int) else Money(p.value, p.currency)
            for d, p in self.prices.items()
        }
        try:
            reqs = tuple(Requirement(Block.parse(b), pct) for b, pct in self.requirements.items())
        except ValueError as e:
            raise CatalogueError(f"service {self.service_id!r}: {e}") from None
        return ServiceOffer(
            service_id=self.service_id, name=self.name, description=self.description,
            feature_flags=tuple(self.feature_flags), parameters=self.parameters,
            prices=prices, temporary_days=self.temporary_days, requirements=reqs,
        )


class _CatalogueConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currency: Currency = "EUR"
    services: dict[StrictStr, dict[str, Any] | None] | list[dict[str, Any]]


# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Catalogue:
    offers: Mapping[str, ServiceOffer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        offers = dict(self.offers)
        for sid, offer in offers.items():
            if sid != offer.service_id:
                raise CatalogueError(f"catalogue key {sid!r} differs from service id {offer.service_id!r}")
        object.__setattr__(self, "offers", MappingProxyType(offers))

    @classmethod
    def of(cls, *offers: ServiceOffer) -> Catalogue:
        ids = [o.service_id for o in offers]
        if len(set(ids)) != len(ids):
            raise CatalogueError(f"duplicate service ids in {ids}")
        return cls({o.service_id: o for o in offers})

    def get(self, service_id: str) -> ServiceOffer:
        try:
            return self.offers[service_id]
        except KeyError:
            raise UnknownService(service_id) from None

    __getitem__ = get

    def __contains__(self, service_id: object) -> bool:
        return service_id in self.offers

    def __iter__(self) -> Iterator[ServiceOffer]:
        return iter(self.offers.values())

    def __len__(self) -> int:
        return len(self.offers)

    def __hash__(self) -> int:
        return hash(tuple(self.offers))

    def price_for(self, service_id: str, duration_type: DurationType | str) -> Money:
        return self.get(service_id).price_for(duration_type)

    def expiry_for(self, service_id: str, duration_type: DurationType | str, now: float) -> float | None:
        return self.get(service_id).expiry_for(duration_type, now)

    def shared_features(self, service_id: str, other_id: str) -> tuple[str, ...]:
        """The feature flags both services switch on (``ServiceOffer.shared_features``). A
        service since removed from the catalogue shares only with itself, its id standing for
        its unknown flags."""
        if service_id in self and other_id in self:
            return self.get(service_id).shared_features(self.get(other_id)) or (
                (service_id,) if service_id == other_id else ())
        return (service_id,) if service_id == other_id else ()

    def to_dict(self) -> dict[str, Any]:
        return {"services": [o.to_dict() for o in self]}

    @classmethod
    def default(cls) -> Catalogue:
        return DEFAULT_CATALOGUE

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: Catalogue | None = None) -> Catalogue:
        """Build a catalogue from settings.

        ``data`` is ``{"currency": "EUR", "services": [...]}`` or with ``services`` a
        mapping of service id to definition. A definition has ``service_id`` (implied by
        the mapping key), ``name``, ``feature_flags``, ``parameters``, ``prices``
        (duration type to minor units in ``currency``, or ``{"value", "currency"}``),
        ``temporary_days`` and ``requirements`` (block code or name to minimum %).

        With ``base``, a definition of an existing id is merged into it, each given field
        replacing the base's wholesale (give only the fields to change, e.g. ``{"performance-boost": {"requirements": {"Powertrain": 85}}}``),
        ``None`` as a definition removes the service, and a new id must be complete.
        """
        try:
            cfg = _CatalogueConfig.model_validate(dict(data))
        except ValidationError as e:
            raise CatalogueError(f"invalid catalogue: {e}") from None
        if isinstance(cfg.services, list):
            entries: list[tuple[str, dict[str, Any] | None]] = []
            for raw in cfg.services:
                if not isinstance(raw, dict) or "service_id" not in raw:
                    raise CatalogueError(f"each service needs a service_id: {raw!r}")
                entries.append((raw["service_id"], raw))
        else:
            entries = list(cfg.services.items())
        ids = [sid for sid, _ in entries]
        if len(set(ids)) != len(ids):
            raise CatalogueError(f"duplicate service ids in {ids}")
        offers: dict[str, ServiceOffer] = dict(base.offers) if base is not None else {}
        for sid, raw in entries:
            if raw is None:
                if sid not in offers:
                    raise CatalogueError(f"cannot remove unknown service {sid!r}")
                del offers[sid]
                continue
            raw = dict(raw)
            if raw.setdefault("service_id", sid) != sid:
                raise CatalogueError(f"key {sid!r} differs from service_id {raw['service_id']!r}")
            if sid in offers and base is not None:
                merged = offers[sid].to_dict()
                merged.update(raw)  # each given field replaces the base's wholesale
                if ("temporary_days" not in raw and "temporary_days" in merged
                        and "TEMPORARY" not in {str(k) for k in merged["prices"]}):
                    del merged["temporary_days"]  # the override dropped the TEMPORARY price
                raw = merged
            try:
                offers[sid] = _OfferConfig.model_validate(raw).to_offer(cfg.currency)
            except ValidationError as e:
                raise CatalogueError(f"service {sid!r}: {e}") from None
        return cls(offers)


def _eur(value: int) -> Money:
    return Money(value, "EUR")


DEFAULT_CATALOGUE = Catalogue.of(
    ServiceOffer(
        service_id="performance-boost",
        name="Performance Boost (+50% power)",
        description="Unlocks the full power map of the powertrain: +50% power and torque.",
        feature_flags=("performance_boost",),
        parameters={"powerIncreasePct": 50, "torqueIncreasePct": 40, "thermalGuard": True},
        prices={DurationType.TEMPORARY: _eur(9_900), DurationType.PERMANENT: _eur(149_900),
                DurationType.SUBSCRIPTION: _eur(4_900)},
        temporary_days=30,
        requirements=(Requirement(Block.POWERTRAIN, 80), Requirement(Block.BRAKES, 80)),
    ),
    ServiceOffer(
        service_id="track-mode",
        name="Track Mode with Launch Control",
        description="Circuit driving: track chassis and stability settings and launch control.",
        feature_flags=("track_mode", "launch_control"),
        parameters={"escMode": "track", "launchRpm": 4500, "brakeCoolingBoost": True},
        prices={DurationType.TEMPORARY: _eur(7_900), DurationType.PERMANENT: _eur(199_900)},
        temporary_days=3,
        requirements=(Requirement(Block.BRAKES, 90), Requirement(Block.SUSPENSION_STEERING, 90),
                      Requirement(Block.DRIVETRAIN, 90)),
    ),
    ServiceOffer(
        service_id="sport-mode",
        name="Sport Mode",
        description="Sharper throttle response and sport steering.",
        feature_flags=("sport_mode",),
        parameters={"throttleMap": "sport", "steeringWeight": "firm"},
        prices={DurationType.TEMPORARY: _eur(1_900), DurationType.PERMANENT: _eur(39_900),
                DurationType.SUBSCRIPTION: _eur(1_499)},
        temporary_days=7,
        requirements=(Requirement(Block.POWERTRAIN, 80), Requirement(Block.SUSPENSION_STEERING, 80)),
    ),
    ServiceOffer(
        service_id="adaptive-suspension",
        name="Adaptive Suspension",
        description="Continuously adjusted damping, comfort to sport.",
        feature_flags=("adaptive_suspension",),
        parameters={"defaultProfile": "comfort", "offRoadHeightMm": 40},
        prices={DurationType.PERMANENT: _eur(69_900), DurationType.SUBSCRIPTION: _eur(1_299)},
        requirements=(Requirement(Block.SUSPENSION_STEERING, 80),),
    ),
    ServiceOffer(
        service_id="heated-seats",
        name="Heated Seats",
        description="Front seat heating, three levels.",
        feature_flags=("heated_seats",),
        parameters={"level": "high", "maxTempC": 30, "autoStart": True},
        prices={DurationType.TEMPORARY: _eur(999), DurationType.PERMANENT: _eur(29_900),
                DurationType.SUBSCRIPTION: _eur(499)},
        temporary_days=30,
    ),
    ServiceOffer(
        service_id="winter-package",
        name="Winter Package",
        description="Heated seats, heated steering wheel and windscreen, cabin pre-heating.",
        feature_flags=("winter_package", "heated_seats"),
        parameters={"heatedSteeringWheel": True, "windscreenHeating": True, "preheatMinutes": 20},
        prices={DurationType.TEMPORARY: _eur(5_900), DurationType.PERMANENT: _eur(49_900)},
        temporary_days=90,
        requirements=(Requirement(Block.CLIMATE_CONTROL, 70),),
    ),
    ServiceOffer(
        service_id="autopilot-plus",
        name="Autopilot Plus",
        description="Assisted motorway driving with automatic lane changes and remote parking.",
        feature_flags=("autopilot_plus", "remote_parking"),
        parameters={"laneChangeAssist": True, "maxAssistSpeedKmh": 130},
        prices={DurationType.TEMPORARY: _eur(19_900), DurationType.PERMANENT: _eur(750_000),
                DurationType.SUBSCRIPTION: _eur(9_900)},
        temporary_days=30,
        requirements=(Requirement(Block.ELECTRONICS, 90), Requirement(Block.BRAKES, 80)),
    ),
    ServiceOffer(
        service_id="extended-range",
        name="Extended Range",
        description="Unlocks the reserved battery capacity for longer trips.",
        feature_flags=("extended_range",),
        parameters={"batteryBufferPct": 5},
        prices={DurationType.TEMPORARY: _eur(1_499), DurationType.SUBSCRIPTION: _eur(999)},
        temporary_days=7,
        requirements=(Requirement(Block.POWERTRAIN, 80),),
    ),
    ServiceOffer(
        service_id="premium-audio",
        name="Premium Audio",
        description="The full premium sound system, all speakers and the sound profile.",
        feature_flags=("premium_audio",),
        parameters={"soundProfile": "concert", "speakerCount": 14},
        prices={DurationType.PERMANENT: _eur(24_900), DurationType.SUBSCRIPTION: _eur(599)},
    ),
    ServiceOffer(
        service_id="matrix-headlights",
        name="Matrix LED Headlights",
        description="Glare-free adaptive high beam.",
        feature_flags=("matrix_headlights",),
        parameters={"adaptiveHighBeam": True},
        prices={DurationType.PERMANENT: _eur(49_900), DurationType.SUBSCRIPTION: _eur(799)},
        requirements=(Requirement(Block.ELECTRONICS, 70),),
    ),
)

assert all(c in CURRENCIES for c in {o.currency for o in DEFAULT_CATALOGUE})

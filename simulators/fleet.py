"""The vehicle fleet of the simulated world, derived from the run's seed.

It lives at the top of ``simulators`` because no one simulator owns it: the API IoT
simulator activates services on these vehicles, VSS keeps their maintenance history,
the factory stamps their VINs on the cars it builds and the registries check those VINs.
Each of them builds its own ``Fleet`` from the same seed and gets the same vehicles,
without importing another simulator.

Nothing is stored per vehicle: a VIN is computed from ``(seed, index)`` and its profile
(model, firmware, connectivity archetype, signal) from hashing the same pair, so a
million-vehicle fleet costs a few bytes until a vehicle is touched, and the same seed
gives the same fleet on every run and in every process.

VIN layout (ISO 3779, 17 characters)::

    WMI(3) | VDS(5): model, body, engine, restraint, trim | check digit | year | plant | serial(6)

The serial is the fleet index zero-padded, which makes ``index_of`` O(1): parse the
serial, rebuild the VIN, compare.

Magic VINs (like a payment gateway's test cards): serials 999901..999908 have fixed
behaviours whatever the hash says, see ``MAGIC_SERIALS`` and ``Fleet.magic_vins()``.
This module only describes them; the simulator's model applies them.

LIMITATIONS (where this knowingly differs from a real fleet):
- WMIs are invented (they may collide with codes assigned to real makers) and every
  VIN carries the North-American check digit, which European makers need not use.
- The VDS is hashed per vehicle, not a maker's coded scheme: two cars of the same model
  may have different body/engine codes with no meaning behind them. Model years are
  2024-2027 only, one plant per seed, and serials are dense 000000-999999, not
  partitioned by plant or year.
- Each vehicle keeps one connectivity archetype for its whole life; real cars move in and
  out of coverage, drain their 12 V battery, roam. Sleep windows are in UTC (no time
  zones or DST). An OFFLINE_WINDOW car has exactly one window, inside the first 30 days
  after the fleet epoch, and is online before and after it.
- FLAKY failures are independent per attempt (no bursts, no correlation with signal).
- Signal strength is a step function per hour without location; latencies are uniform
  within their ranges, not heavy-tailed.
- Every optional feature is pre-installed on every vehicle, whatever its model; which
  features are active is state, kept by the simulator's model, not here.
"""

from __future__ import annotations

import hashlib
import math
import operator
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEFAULT_EPOCH",
    "LIMITED",
    "MAGIC_SERIALS",
    "MAX_FLEET_SIZE",
    "MODELS",
    "OFFLINE",
    "ONLINE",
    "OPTIONAL_FEATURES",
    "VIN_ALPHABET",
    "ConnectivityKind",
    "Fleet",
    "VehicleProfile",
    "activation_latency",
    "connectivity_at",
    "flaky_attempt_fails",
    "has_valid_check_digit",
    "is_well_formed_vin",
    "last_seen",
    "next_online",
    "signal_strength",
    "vin_check_digit",
]

# --------------------------------------------------------------------------- VINs

VIN_ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"  # I, O, Q are banned (look like 1, 0)
_VIN_CHARS = frozenset(VIN_ALPHABET)
_TRANSLITERATION = {
    **{d: int(d) for d in "0123456789"},
    "A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 6, "G": 7, "H": 8,
    "J": 1, "K": 2, "L": 3, "M": 4, "N": 5, "P": 7, "R": 9,
    "S": 2, "T": 3, "U": 4, "V": 5, "W": 6, "X": 7, "Y": 8, "Z": 9,
}
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def is_well_formed_vin(vin: object) -> bool:
    """17 characters from VIN_ALPHABET (upper case only)."""
    return isinstance(vin, str) and len(vin) == 17 and _VIN_CHARS.issuperset(vin)


def vin_check_digit(vin: str) -> str:
    """The check digit (position 9) a well-formed VIN should carry; its own position 9 is ignored."""
    if not is_well_formed_vin(vin):
        raise ValueError(f"not a well-formed VIN: {vin!r}")
    remainder = sum(map(operator.mul, map(_TRANSLITERATION.__getitem__, vin), _WEIGHTS)) % 11
    return "X" if remainder == 10 else str(remainder)


def has_valid_check_digit(vin: object) -> bool:
    return is_well_formed_vin(vin) and vin[8] == vin_check_digit(vin)  # type: ignore[index,arg-type]


# ------------------------------------------------------------------ fleet constants

MAX_FLEET_SIZE = 1_000_000  # six serial digits
DEFAULT_EPOCH = 1767600000.0  # 2026-01-05T08:00:00Z
_DAY = 86400.0
_HOUR = 3600.0

# Invented makers; position 3 is never "9" (that would mean a small maker whose id
# continues in positions 12-14, where our serial lives).
_WMIS = ("WCA", "VCS", "ZCA", "SCV", "YC1", "TCA")
_YEAR_CODES = "RSTV"  # 2024, 2025, 2026, 2027 (U, Z and 0 are never year codes)
_PLANT_CODES = "ABCDEFGHJKLMNPRSTUVWXYZ"
_BODY_CODES = "123456789"
_ENGINE_CODES = "ABCDEFGHJKLMNPRSTUVWXYZ"

# (VDS model-line code, human name)
MODELS: tuple[tuple[str, str], ...] = (
    ("A", "Aurora GT"), ("B", "Borealis"), ("C", "Cirrus"), ("N", "Nimbus"),
    ("S", "Stratos"), ("V", "Vela Cross"), ("Z", "Zephyr EV"),
)
_MODEL_BY_CODE = dict(MODELS)

OPTIONAL_FEATURES: tuple[str, ...] = (
    "performance_boost", "adaptive_suspension", "sport_mode", "track_mode",
    "launch_control", "extended_range", "heated_seats", "premium_audio",
    "matrix_headlights", "remote_parking", "autopilot_plus", "winter_package",
)

MAGIC_SERIALS: dict[int, str] = {
    999901: "always_offline",        # never reachable
    999902: "activation_fails",      # every activation fails with ECU_ERROR
    999903: "flaky_twice",           # attempts 1 and 2 fail VEHICLE_OFFLINE, then success
    999904: "callback_lost",         # the first callback is never delivered
    999905: "callback_duplicated",   # callbacks are delivered twice
    999906: "sleeping",              # asleep until woken, at any hour: a slow wake-up
    999907: "limited",               # LIMITED connectivity: slow activations
    999908: "healthy",               # always online, always succeeds, 2 s
}

ONLINE, OFFLINE, LIMITED = "ONLINE", "OFFLINE", "LIMITED"


class ConnectivityKind(StrEnum):
    ALWAYS_ONLINE = "ALWAYS_ONLINE"
    SLEEPS = "SLEEPS"
    FLAKY = "FLAKY"
    OFFLINE_WINDOW = "OFFLINE_WINDOW"
    LIMITED = "LIMITED"


# Cumulative shares: 88% / 6% / 3% / 2% / 1%.
_KIND_THRESHOLDS = (
    (0.88, ConnectivityKind.ALWAYS_ONLINE),
    (0.94, ConnectivityKind.SLEEPS),
    (0.97, ConnectivityKind.FLAKY),
    (0.99, ConnectivityKind.OFFLINE_WINDOW),
    (1.00, ConnectivityKind.LIMITED),
)

# Poor coverage is what makes FLAKY and LIMITED cars what they are.
_SIGNAL_RANGES = {ConnectivityKind.FLAKY: (20, 60), ConnectivityKind.LIMITED: (5, 30)}


# ------------------------------------------------------------------------ hashing

_blake2b = hashlib.blake2b

def _digest(seed: int, *parts: object) -> int:
    """The hash of ``str()`` of each value, joined by ":". The usual arities are spelled out
    (an f-string's ``!s`` is ``str()``): a new vehicle's profile takes five of these, and the
    joined map cost a third of each."""
    if len(parts) == 2:
        key = f"{seed!s}:{parts[0]!s}:{parts[1]!s}"
    elif len(parts) == 3:
        key = f"{seed!s}:{parts[0]!s}:{parts[1]!s}:{parts[2]!s}"
    elif len(parts) == 4:  # an activation's latency, on every push
        key = f"{seed!s}:{parts[0]!s}:{parts[1]!s}:{parts[2]!s}:{parts[3]!s}"
    else:
        key = ":".join(map(str, (seed, *parts)))
    return int.from_bytes(_blake2b(key.encode(), digest_size=8).digest(), "big")


def _unit(seed: int, *parts: object) -> float:
    """Deterministic uniform float in [0, 1) for (seed, *parts)."""
    return _digest(seed, *parts) / 2.0**64


def _between(lo: float, hi: float, seed: int, *parts: object) -> float:
    return lo + (hi - lo) * _unit(seed, *parts)


# ------------------------------------------------------------------------ profile

@dataclass(frozen=True, slots=True)
class VehicleProfile:
    """What the fleet says about one vehicle. Fields that do not apply to the vehicle's
    connectivity kind hold neutral values: flaky_failure_rate 0.0, sleep_hours 0 (never
    asleep), offline_from/offline_until None (no window)."""

    vin: str
    index: int
    seed: int  # the per-vehicle functions below hash with it
    model: str
    firmware_version: str
    features: tuple[str, ...]
    connectivity: ConnectivityKind
    flaky_failure_rate: float
    sleep_start_hour: int
    sleep_hours: int
    offline_from: float | None
    offline_until: float | None
    base_signal: int
    magic: str | None


class Fleet:
    """``Fleet(seed, size)``: vehicles 0..size-1, computed on demand (O(1) memory)."""

    __slots__ = ("_plant", "_wmi", "epoch", "seed", "size")

    def __init__(self, seed: int, size: int = MAX_FLEET_SIZE, epoch: float = DEFAULT_EPOCH):
        if not 1 <= size <= MAX_FLEET_SIZE:
            raise ValueError(f"fleet size must be 1..{MAX_FLEET_SIZE}, got {size}")
        self.seed = int(seed)
        self.size = int(size)
        self.epoch = float(epoch)
        self._wmi = _WMIS[_digest(self.seed, "wmi") % len(_WMIS)]
        self._plant = _PLANT_CODES[_digest(self.seed, "plant") % len(_PLANT_CODES)]

    def __repr__(self) -> str:
        return f"Fleet(seed={self.seed}, size={self.size}, epoch={self.epoch})"

    def __len__(self) -> int:
        return self.size

    def __contains__(self, vin: object) -> bool:
        return self.index_of(vin) is not None  # type: ignore[arg-type]

    # -- VINs ---------------------------------------------------------------------

    def vin_at(self, index: int) -> str:
        if not 0 <= index < self.size:
            raise IndexError(f"vehicle index {index} outside 0..{self.size - 1}")
        n = _digest(self.seed, index, "vin")
        n, model = divmod(n, len(MODELS))
        n, body = divmod(n, len(_BODY_CODES))
        n, engine = divmod(n, len(_ENGINE_CODES))
        n, restraint = divmod(n, len(VIN_ALPHABET))
        n, trim = divmod(n, len(VIN_ALPHABET))
        year = n % len(_YEAR_CODES)
        vds = (MODELS[model][0] + _BODY_CODES[body] + _ENGINE_CODES[engine]
               + VIN_ALPHABET[restraint] + VIN_ALPHABET[trim])
        draft = f"{self._wmi}{vds}0{_YEAR_CODES[year]}{self._plant}{index:06d}"
        return draft[:8] + vin_check_digit(draft) + draft[9:]

    def index_of(self, vin: str) -> int | None:
        """The index of a VIN of this fleet, else None (malformed, bad check digit,
        other seed, out of range)."""
        if not is_well_formed_vin(vin):
            return None
        serial = vin[11:]
        if not serial.isdigit():  # well-formed already means ASCII
            return None
        index = int(serial)
        if index >= self.size or self.vin_at(index) != vin:
            return None
        return index

    def magic_vins(self) -> dict[str, str]:
        """Behaviour name -> VIN, for the magic serials this fleet is large enough to hold."""
        return {name: self.vin_at(s) for s, name in MAGIC_SERIALS.items() if s < self.size}

    # -- profiles -----------------------------------------------------------------

    def profile(self, vin: str) -> VehicleProfile | None:
        index = self.index_of(vin)
        return None if index is None else self._profile(index, vin)

    def profile_at(self, index: int) -> VehicleProfile:
        return self._profile(index, self.vin_at(index))

    def _profile(self, index: int, vin: str) -> VehicleProfile:
        s = self.seed
        magic = MAGIC_SERIALS.get(index)
        fw = _digest(s, index, "firmware")
        firmware = f"{3 + fw % 3}.{(fw >> 8) % 21}.{(fw >> 16) % 10}"

        kind = _kind_for(_unit(s, index, "kind"))
        flaky_rate, sleep_start, sleep_hours = 0.0, 0, 0
        offline_from = offline_until = None
        if kind is ConnectivityKind.FLAKY:
            flaky_rate = round(_between(0.2, 0.5, s, index, "flaky_rate"), 3)
        elif kind is ConnectivityKind.SLEEPS:
            sleep_start = _digest(s, index, "sleep_start") % 24
            sleep_hours = 4 + _digest(s, index, "sleep_hours") % 9  # 4..12 h
        elif kind is ConnectivityKind.OFFLINE_WINDOW:
            # Whole window inside the first 30 days, so short scenarios can meet it.
            length = _between(2 * _HOUR, 3 * _DAY, s, index, "offline_len")
            offline_from = self.epoch + _between(0, 30 * _DAY - length, s, index, "offline_at")
            offline_until = offline_from + length
        lo, hi = _SIGNAL_RANGES.get(kind, (50, 100))
        base_signal = lo + _digest(s, index, "signal") % (hi - lo + 1)

        if magic is not None:  # fixed behaviours override whatever the hash said
            flaky_rate, sleep_start, sleep_hours = 0.0, 0, 0
            offline_from = offline_until = None
            kind = ConnectivityKind.ALWAYS_ONLINE
            if magic == "always_offline":
                kind, offline_from, offline_until = ConnectivityKind.OFFLINE_WINDOW, -math.inf, math.inf
            elif magic == "sleeping":
                # asleep round the clock (woken by each command): a magic behaviour must not depend
                # on the hour a shared clock shows (it was awake 22:00-02:00 UTC)
                kind, sleep_start, sleep_hours = ConnectivityKind.SLEEPS, 0, 24
            elif magic == "limited":
                kind, base_signal = ConnectivityKind.LIMITED, 15
            elif magic == "healthy":
                base_signal = 95

        return VehicleProfile(
            vin=vin, index=index, seed=s, model=_MODEL_BY_CODE[vin[3]],
            firmware_version=firmware, features=OPTIONAL_FEATURES, connectivity=kind,
            flaky_failure_rate=flaky_rate, sleep_start_hour=sleep_start, sleep_hours=sleep_hours,
            offline_from=offline_from, offline_until=offline_until,
            base_signal=base_signal, magic=magic,
        )


def _kind_for(u: float) -> ConnectivityKind:
    for threshold, kind in _KIND_THRESHOLDS:
        if u < threshold:
            return kind
    return ConnectivityKind.LIMITED


# ----------------------------------------------------- behaviour at virtual time t

def _asleep_for(p: VehicleProfile, t: float) -> float | None:
    """Seconds since the current sleep began, or None when awake."""
    if p.connectivity is not ConnectivityKind.SLEEPS or p.sleep_hours <= 0:
        return None
    since = (t - p.sleep_start_hour * _HOUR) % _DAY  # handles windows across midnight
    return since if since < p.sleep_hours * _HOUR else None


def _in_window(p: VehicleProfile, t: float) -> bool:
    return (p.connectivity is ConnectivityKind.OFFLINE_WINDOW and p.offline_from is not None
            and p.offline_from <= t < p.offline_until)  # type: ignore[operator]


def connectivity_at(profile: VehicleProfile, t: float) -> str:
    """"ONLINE" | "OFFLINE" | "LIMITED" at virtual time t (epoch seconds). A sleeping car
    is OFFLINE until woken; FLAKY cars report ONLINE and fail attempts instead."""
    if _in_window(profile, t) or _asleep_for(profile, t) is not None:
        return OFFLINE
    return LIMITED if profile.connectivity is ConnectivityKind.LIMITED else ONLINE


def last_seen(profile: VehicleProfile, t: float) -> float:
    """t when reachable, else when the current offline period began. That is -inf for
    the always_offline magic vehicle (never seen): callers must render it (e.g. null)."""
    if _in_window(profile, t):
        return profile.offline_from  # type: ignore[return-value]
    asleep = _asleep_for(profile, t)
    return t if asleep is None else t - asleep


def next_online(profile: VehicleProfile, t: float) -> float:
    """When the vehicle is next reachable (t if it is now; +inf if never)."""
    if _in_window(profile, t):
        return profile.offline_until  # type: ignore[return-value]
    asleep = _asleep_for(profile, t)
    return t if asleep is None else t - asleep + profile.sleep_hours * _HOUR


def signal_strength(profile: VehicleProfile, t: float) -> int:
    """0..100: 0 when offline, base_signal +-8 varying per hour, at most 30 when LIMITED."""
    status = connectivity_at(profile, t)
    if status == OFFLINE:
        return 0
    hour = math.floor(t / _HOUR)
    wobble = _digest(profile.seed, profile.vin, "signal", hour) % 17 - 8
    value = min(100, max(1, profile.base_signal + wobble))  # reachable cars never report 0
    return min(value, 30) if status == LIMITED else value


def flaky_attempt_fails(profile: VehicleProfile, attempt: int) -> bool:
    """Whether attempt number `attempt` fails on a FLAKY vehicle (independent draws)."""
    if profile.connectivity is not ConnectivityKind.FLAKY:
        return False
    return _unit(profile.seed, profile.vin, "flaky", attempt) < profile.flaky_failure_rate


def activation_latency(profile: VehicleProfile, t: float, attempt: int) -> float:
    """Seconds the vehicle takes to apply a configuration once reachable; includes the
    wake-up when a SLEEPS vehicle is asleep at t."""
    if profile.magic == "healthy":
        return 2.0
    parts = (profile.index, "latency", attempt, t)
    if profile.connectivity is ConnectivityKind.LIMITED:
        latency = _between(30.0, 180.0, profile.seed, *parts)
    else:
        latency = _between(2.0, 20.0, profile.seed, *parts)
    if _asleep_for(profile, t) is not None:
        lo, hi = (150.0, 300.0) if profile.magic == "sleeping" else (30.0, 120.0)
        latency += _between(lo, hi, profile.seed, profile.index, "wake", attempt, t)
    return round(latency, 3)

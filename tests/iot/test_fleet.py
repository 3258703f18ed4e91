import dataclasses
import math
import sys
import time
from collections import Counter

import pytest

from caas_sim.simulators.fleet import (
    DEFAULT_EPOCH,
    LIMITED,
    MAGIC_SERIALS,
    OFFLINE,
    ONLINE,
    OPTIONAL_FEATURES,
    VIN_ALPHABET,
    ConnectivityKind,
    Fleet,
    VehicleProfile,
    activation_latency,
    connectivity_at,
    flaky_attempt_fails,
    has_valid_check_digit,
    is_well_formed_vin,
    last_seen,
    next_online,
    signal_strength,
    vin_check_digit,
)

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.iot.test_fleet")

SEED = 42
HOUR, DAY = 3600.0, 86400.0
MIDNIGHT = DEFAULT_EPOCH - 8 * HOUR  # 2026-01-05T00:00:00Z


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet(SEED)


@pytest.fixture(scope="module")
def by_kind(fleet) -> dict[ConnectivityKind, VehicleProfile]:
    """First ordinary (non-magic) vehicle of each connectivity kind."""
    found: dict[ConnectivityKind, VehicleProfile] = {}
    for i in range(5000):
        p = fleet.profile_at(i)
        found.setdefault(p.connectivity, p)
        if len(found) == len(ConnectivityKind):
            return found
    raise AssertionError(f"only found {sorted(found)}")


# ------------------------------------------------------------------------------ VINs

def test_alphabet_has_no_i_o_q():
    assert len(VIN_ALPHABET) == 33 and not set("IOQ") & set(VIN_ALPHABET)


@pytest.mark.parametrize("vin", ["1M8GDM9AXKP042788", "11111111111111111", "1HGCM82633A004352"])
def test_known_real_vins_have_valid_check_digit(vin):
    assert is_well_formed_vin(vin)
    assert vin_check_digit(vin) == vin[8]
    assert has_valid_check_digit(vin)


def test_check_digit_x_and_wrong_digit():
    assert vin_check_digit("1M8GDM9AXKP042788") == "X"
    assert not has_valid_check_digit("1M8GDM95XKP042788")
    assert not has_valid_check_digit("11111111211111111")


@pytest.mark.parametrize("bad", [None, 17, "", "1M8GDM9AXKP04278", "1M8GDM9AXKP0427888",
                                 "1m8gdm9axkp042788", "1M8GDM9AXKP04278I", "1M8GDM9AXKP04278O"])
def test_malformed_vins(bad):
    assert not is_well_formed_vin(bad)
    assert not has_valid_check_digit(bad)


def test_check_digit_rejects_malformed():
    with pytest.raises(ValueError):
        vin_check_digit("1M8GDM9AXKP0427Q8")


# ----------------------------------------------------------------------------- fleet

def test_vins_round_trip_and_are_well_formed(fleet):
    sample = [0, 1, 2, 17, 4242, 123456, 999_900, *MAGIC_SERIALS, fleet.size - 1]
    sample += range(0, fleet.size, 9973)
    wmis, plants = set(), set()
    for i in sample:
        vin = fleet.vin_at(i)
        assert has_valid_check_digit(vin), vin
        assert vin[9] in "RSTV" and vin[11:] == f"{i:06d}"
        assert fleet.index_of(vin) == i and vin in fleet
        wmis.add(vin[:3])
        plants.add(vin[10])
    assert len(wmis) == 1 and len(plants) == 1  # fixed per seed


def test_small_fleet_round_trip_and_range():
    small = Fleet(SEED, size=1000)
    assert len(small) == 1000
    assert small.index_of(small.vin_at(999)) == 999
    assert small.vin_at(500) == Fleet(SEED).vin_at(500)  # a smaller fleet is a prefix
    assert Fleet(SEED).vin_at(5000) not in small
    assert small.magic_vins() == {}
    with pytest.raises(IndexError):
        small.vin_at(1000)
    with pytest.raises(IndexError):
        small.vin_at(-1)


@pytest.mark.parametrize("size", [0, 1_000_001])
def test_fleet_size_bounds(size):
    with pytest.raises(ValueError):
        Fleet(SEED, size=size)


def test_tampered_vin_is_rejected(fleet):
    vin = fleet.vin_at(31337)
    for pos in range(17):
        for c in "0A7Z":
            if c != vin[pos]:
                tampered = vin[:pos] + c + vin[pos + 1:]
                assert fleet.index_of(tampered) is None, (pos, tampered)
                assert fleet.profile(tampered) is None


def test_malformed_is_not_in_fleet(fleet):
    vin = fleet.vin_at(7)
    for bad in (None, "", vin.lower(), vin[:-1], vin + "0", vin[:11] + "00000I"):
        assert fleet.index_of(bad) is None
        assert bad not in fleet


def test_other_seed_vins_are_not_in_fleet(fleet):
    other = Fleet(SEED + 1)
    for i in range(0, 1_000_000, 4999):
        assert other.vin_at(i) not in fleet
        assert other.vin_at(i) != fleet.vin_at(i)


def test_same_seed_same_fleet(fleet):
    twin = Fleet(SEED)
    for i in (0, 5, 777, 999_999, 999_906):
        assert twin.vin_at(i) == fleet.vin_at(i)
        assert twin.profile(twin.vin_at(i)) == fleet.profile(fleet.vin_at(i))
    assert twin.magic_vins() == fleet.magic_vins()


def test_fleet_is_cheap():
    start = time.perf_counter()
    big = Fleet(7, 1_000_000)
    assert time.perf_counter() - start < 0.05
    assert sys.getsizeof(big) < 200
    for name in type(big).__slots__:  # nothing per vehicle hides in an attribute
        value = getattr(big, name)
        assert isinstance(value, (int, float, str)) and sys.getsizeof(value) < 100
    assert not hasattr(big, "__dict__")


def test_profile_fields(fleet):
    vin = fleet.vin_at(123)
    p = fleet.profile(vin)
    assert p is not None and p.vin == vin and p.index == 123
    assert p.features == OPTIONAL_FEATURES and len(OPTIONAL_FEATURES) == 12
    assert p.model and len(p.firmware_version.split(".")) == 3
    assert 0 <= p.base_signal <= 100 and p.magic is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.base_signal = 1  # type: ignore[misc]


def test_connectivity_distribution(fleet):
    counts = Counter(fleet.profile_at(i).connectivity for i in range(20_000))
    share = {k: counts[k] / 20_000 for k in ConnectivityKind}
    assert 0.86 < share[ConnectivityKind.ALWAYS_ONLINE] < 0.90
    assert 0.05 < share[ConnectivityKind.SLEEPS] < 0.07
    assert 0.02 < share[ConnectivityKind.FLAKY] < 0.04
    assert 0.012 < share[ConnectivityKind.OFFLINE_WINDOW] < 0.028
    assert 0.005 < share[ConnectivityKind.LIMITED] < 0.015


def test_kind_specific_fields(by_kind, fleet):
    flaky = by_kind[ConnectivityKind.FLAKY]
    assert 0.2 <= flaky.flaky_failure_rate <= 0.5
    sleeps = by_kind[ConnectivityKind.SLEEPS]
    assert 0 <= sleeps.sleep_start_hour < 24 and 4 <= sleeps.sleep_hours <= 12
    window = by_kind[ConnectivityKind.OFFLINE_WINDOW]
    assert fleet.epoch <= window.offline_from < window.offline_until <= fleet.epoch + 30 * DAY
    assert 2 * HOUR <= window.offline_until - window.offline_from <= 3 * DAY
    online = by_kind[ConnectivityKind.ALWAYS_ONLINE]
    assert online.flaky_failure_rate == 0.0 and online.sleep_hours == 0
    assert online.offline_from is None and online.offline_until is None


def test_offline_window_follows_epoch():
    a, b = Fleet(SEED, epoch=DEFAULT_EPOCH), Fleet(SEED, epoch=DEFAULT_EPOCH + 10 * DAY)
    for i in range(3000):
        p = a.profile_at(i)
        if p.connectivity is ConnectivityKind.OFFLINE_WINDOW:
            assert b.profile_at(i).offline_from == p.offline_from + 10 * DAY
            return
    raise AssertionError("no OFFLINE_WINDOW vehicle found")


# ----------------------------------------------------------------------- magic VINs

def test_magic_vins(fleet):
    magic = fleet.magic_vins()
    assert set(magic) == set(MAGIC_SERIALS.values()) and len(magic) == 8
    kinds = {}
    for name, vin in magic.items():
        p = fleet.profile(vin)
        assert p.magic == name and MAGIC_SERIALS[p.index] == name
        kinds[name] = p.connectivity
    assert kinds == {
        "always_offline": ConnectivityKind.OFFLINE_WINDOW,
        "activation_fails": ConnectivityKind.ALWAYS_ONLINE,
        "flaky_twice": ConnectivityKind.ALWAYS_ONLINE,
        "callback_lost": ConnectivityKind.ALWAYS_ONLINE,
        "callback_duplicated": ConnectivityKind.ALWAYS_ONLINE,
        "sleeping": ConnectivityKind.SLEEPS,
        "limited": ConnectivityKind.LIMITED,
        "healthy": ConnectivityKind.ALWAYS_ONLINE,
    }


def test_magic_behaviours(fleet):
    m = {name: fleet.profile(vin) for name, vin in fleet.magic_vins().items()}
    off = m["always_offline"]
    assert off.offline_from == -math.inf and off.offline_until == math.inf
    for t in (0.0, DEFAULT_EPOCH, DEFAULT_EPOCH + 400 * DAY):
        assert connectivity_at(off, t) == OFFLINE and signal_strength(off, t) == 0
        assert last_seen(off, t) == -math.inf and next_online(off, t) == math.inf

    sleeping = m["sleeping"]
    # asleep at every hour, so that what it does never depends on the hour a shared clock shows
    assert [connectivity_at(sleeping, MIDNIGHT + h * HOUR + 1800) for h in range(24)] == [OFFLINE] * 24
    assert all(activation_latency(sleeping, MIDNIGHT + h * HOUR, 1) > 150 for h in range(24))

    limited = m["limited"]
    for t in (DEFAULT_EPOCH, DEFAULT_EPOCH + 5 * DAY):
        assert connectivity_at(limited, t) == LIMITED
        assert 30 <= activation_latency(limited, t, 1) <= 180

    healthy = m["healthy"]
    for k in range(50):
        t = DEFAULT_EPOCH + k * 7919.0
        assert connectivity_at(healthy, t) == ONLINE
        assert activation_latency(healthy, t, k) == 2.0
        assert not flaky_attempt_fails(healthy, k)
    for name in ("activation_fails", "flaky_twice", "callback_lost", "callback_duplicated"):
        assert connectivity_at(m[name], DEFAULT_EPOCH) == ONLINE


# ------------------------------------------------------------- behaviour over time

def test_always_online_and_flaky_report_online(by_kind):
    for kind in (ConnectivityKind.ALWAYS_ONLINE, ConnectivityKind.FLAKY):
        p = by_kind[kind]
        for k in range(48):
            t = DEFAULT_EPOCH + k * 1800.0
            assert connectivity_at(p, t) == ONLINE
            assert last_seen(p, t) == t and next_online(p, t) == t
            assert 1 <= signal_strength(p, t) <= 100


def test_sleeps_daily_window(by_kind):
    p = dataclasses.replace(by_kind[ConnectivityKind.SLEEPS], sleep_start_hour=22, sleep_hours=6)
    t_asleep = MIDNIGHT + 1 * HOUR + 30 * 60  # 01:30, across midnight
    assert connectivity_at(p, t_asleep) == OFFLINE
    assert last_seen(p, t_asleep) == MIDNIGHT - 2 * HOUR  # fell asleep 22:00 the day before
    assert next_online(p, t_asleep) == MIDNIGHT + 4 * HOUR
    assert signal_strength(p, t_asleep) == 0
    assert connectivity_at(p, MIDNIGHT + 22 * HOUR) == OFFLINE  # start is inclusive
    assert connectivity_at(p, MIDNIGHT + 4 * HOUR) == ONLINE  # end is exclusive
    t_awake = MIDNIGHT + 12 * HOUR
    assert connectivity_at(p, t_awake) == ONLINE and last_seen(p, t_awake) == t_awake
    woken = activation_latency(p, t_asleep, 1)
    assert 32 <= woken <= 140
    assert 2 <= activation_latency(p, t_awake, 1) <= 20


def test_offline_window(by_kind):
    p = by_kind[ConnectivityKind.OFFLINE_WINDOW]
    before, inside = p.offline_from - 1, (p.offline_from + p.offline_until) / 2
    assert connectivity_at(p, before) == ONLINE and last_seen(p, before) == before
    assert connectivity_at(p, inside) == OFFLINE and last_seen(p, inside) == p.offline_from
    assert next_online(p, inside) == p.offline_until and signal_strength(p, inside) == 0
    assert connectivity_at(p, p.offline_until) == ONLINE


def test_limited(by_kind):
    p = by_kind[ConnectivityKind.LIMITED]
    for k in range(48):
        t = DEFAULT_EPOCH + k * HOUR
        assert connectivity_at(p, t) == LIMITED and last_seen(p, t) == t
        assert 1 <= signal_strength(p, t) <= 30
        assert 30 <= activation_latency(p, t, 1) <= 180


def test_signal_varies_per_hour_deterministically(fleet, by_kind):
    p = by_kind[ConnectivityKind.ALWAYS_ONLINE]
    same_hour = {signal_strength(p, DEFAULT_EPOCH + s) for s in (0, 600, 3599)}
    assert len(same_hour) == 1
    over_day = [signal_strength(p, DEFAULT_EPOCH + h * HOUR) for h in range(24)]
    assert len(set(over_day)) > 1 and all(abs(v - p.base_signal) <= 8 for v in over_day)
    twin = Fleet(SEED).profile(p.vin)
    assert over_day == [signal_strength(twin, DEFAULT_EPOCH + h * HOUR) for h in range(24)]


def test_flaky_attempts_deterministic(by_kind):
    p = by_kind[ConnectivityKind.FLAKY]
    first = [flaky_attempt_fails(p, a) for a in range(1, 2001)]
    assert first == [flaky_attempt_fails(p, a) for a in range(1, 2001)]
    assert abs(sum(first) / len(first) - p.flaky_failure_rate) < 0.05
    other_seed = dataclasses.replace(p, seed=p.seed + 1)
    assert first != [flaky_attempt_fails(other_seed, a) for a in range(1, 2001)]
    for kind in (ConnectivityKind.ALWAYS_ONLINE, ConnectivityKind.SLEEPS, ConnectivityKind.LIMITED,
                 ConnectivityKind.OFFLINE_WINDOW):
        assert not any(flaky_attempt_fails(by_kind[kind], a) for a in range(100))


def test_activation_latency_ranges_and_determinism(fleet):
    for i in range(300):
        p = fleet.profile_at(i)
        t = DEFAULT_EPOCH + i * 977.0
        lat = activation_latency(p, t, 1)
        assert lat == activation_latency(p, t, 1)
        if p.connectivity is ConnectivityKind.LIMITED:
            assert 30 <= lat <= 180
        elif connectivity_at(p, t) == OFFLINE and p.connectivity is ConnectivityKind.SLEEPS:
            assert 32 <= lat <= 140
        else:
            assert 2 <= lat <= 20


@pytest.mark.parametrize("parts", [(7, "vin"), (12345, "kind"), ("WCAS3T303SZ238954", "signal", 493),
                                   ("WCAS3T303SZ238954", "flaky", 2), (7, "latency", 3, 1767600123.25),
                                   (ConnectivityKind.FLAKY, None), (1.5, -0.0, True), ()])
def test_the_digest_hashes_each_value_as_str_joined_whatever_the_arity(parts):
    """The hashed text is pinned by every seeded fleet: the spelled-out arities must be the join."""
    import hashlib

    from caas_sim.simulators.fleet import _digest

    text = ":".join(map(str, (42, *parts))).encode()
    assert _digest(42, *parts) == int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")

"""The idempotency store: replay, refusal, expiry by age and by count, out of the collector's sight."""

import gc

from caas_sim.simulators.kit.idempotency import KEY_TTL, IdempotencyStore


class Clock:
    def __init__(self):
        self.t = 1_000_000.0

    def __call__(self):
        return self.t


def answered(store, key, fingerprint="fp", status=201):
    state, _ = store.begin("op", key, fingerprint)
    store.complete("op", key, status, b'{"id": "%s"}' % key.encode(), "application/json", "/x")
    return state


def test_same_key_replays_another_body_is_refused_and_an_unfinished_one_is_in_flight():
    store = IdempotencyStore(Clock())
    assert answered(store, "k1") == "new"
    state, entry = store.begin("op", "k1", "fp")
    assert (state, entry.status, entry.body, entry.location) == ("replay", 201, b'{"id": "k1"}', "/x")
    assert store.begin("op", "k1", "other")[0] == "mismatch"
    assert store.begin("op", "k2", "fp")[0] == "new"
    assert store.begin("op", "k2", "fp")[0] == "conflict"
    store.abandon("op", "k2")
    assert store.begin("op", "k2", "fp")[0] == "new"
    assert store.begin("other-op", "k1", "other")[0] == "new"  # keys are per operation


def test_a_key_is_forgotten_a_day_after_its_first_use():
    clock = Clock()
    store = IdempotencyStore(clock)
    answered(store, "old")
    clock.t += KEY_TTL / 2
    answered(store, "recent")
    clock.t += KEY_TTL / 2 + 1
    answered(store, "now")  # any call forgets what expired
    assert len(store) == 2
    assert store.begin("op", "old", "another body")[0] == "new"
    assert store.begin("op", "recent", "fp")[0] == "replay"


def test_past_the_keys_kept_the_oldest_answered_are_forgotten_and_an_unfinished_one_is_kept():
    store = IdempotencyStore(Clock(), keep=3)
    store.begin("op", "running", "fp")  # never completed while the others come
    for n in range(10):
        answered(store, f"k{n}")
    assert len(store) <= 4
    assert store.begin("op", "running", "fp")[0] == "conflict"
    assert store.begin("op", "k0", "another body")[0] == "new"  # forgotten
    assert store.begin("op", "k9", "fp")[0] == "replay"


def test_entries_are_bytes_under_strings_in_a_dict_the_collector_does_not_track():
    store = IdempotencyStore(Clock())
    for n in range(100):
        answered(store, f"k{n}")
    assert all(type(entry) is bytes for entry in store._keys.raw_values())
    gc.collect()
    assert not gc.is_tracked(store._keys._raw)

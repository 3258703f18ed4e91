"""Finished things forgotten a period of clock time after their last change, or once too many."""

from caas_sim.simulators.kit.retention import SCAN, Retention


def touched_one_per_instant(keys, **bounds):
    """(clock, retention): each key touched at its own instant, 0, 1, 2..."""
    now = [0.0]
    retention = Retention(lambda: now[0], **bounds)
    for n, key in enumerate(keys):
        now[0] = n
        retention.touched(key)
    return now, retention


def forget_finished(retention, finished) -> list:
    """One ``due`` call as a model makes it: the finished keys forgotten (returned), the others held."""
    forgotten = []
    for key in retention.due():
        if key in finished:
            forgotten.append(key)
        else:
            retention.touched(key, finished=False)  # held until a change finishes it
    return forgotten


def test_keys_come_due_a_period_after_their_last_touch_oldest_first():
    now = [0.0]
    retention = Retention(lambda: now[0], period=100)
    retention.touched("a")
    now[0] = 10
    retention.touched("b")
    retention.touched("b")  # one instant: queued once
    now[0] = 50
    retention.touched("a")  # touched again: due 100 after this
    now[0] = 110
    assert list(retention.due()) == ["b"]
    now[0] = 150
    assert list(retention.due()) == ["a"]
    assert list(retention.due()) == []


def test_a_forgotten_key_never_comes_due():
    now = [0.0]
    retention = Retention(lambda: now[0], period=1)
    retention.touched("a")
    retention.forget("a")
    now[0] = 5
    assert list(retention.due()) == []


def test_past_keep_the_oldest_come_due_whatever_their_age():
    _, retention = touched_one_per_instant("abc", keep=2)
    assert list(retention.due()) == ["a"]
    assert list(retention.due()) == []


def test_one_found_unfinished_is_held_and_the_next_oldest_goes():
    now, retention = touched_one_per_instant(["live", "done"], keep=1)
    now[0] = 2
    assert forget_finished(retention, {"done"}) == ["done"] and list(retention.due()) == []


def test_a_call_looks_at_a_bounded_number_of_entries_when_nothing_held_is_finished():
    """Past ``keep`` with every key still on its way, a call looks at ``SCAN`` of them at
    most (a whole pass per call made each request of a loaded simulator cost ~90 ms)."""
    now, retention = touched_one_per_instant(range(50_000), keep=10)
    looked = []
    for key in retention.due():
        looked.append(key)
        retention.touched(key, finished=False)
    assert looked == list(range(SCAN))  # the oldest few, now held out of the queue
    now[0] += 1
    assert list(retention.due()) == list(range(SCAN, 2 * SCAN))


def test_what_finishes_is_still_forgotten_within_a_few_calls():
    now, retention = touched_one_per_instant(range(1000), keep=100)
    finished = set(range(0, 1000, 3))
    forgotten, calls = set(), 0
    while forgotten != finished and calls < 1000:
        calls += 1
        now[0] += 1
        forgotten.update(forget_finished(retention, finished))
    assert forgotten == finished and calls <= 2 * 1000 // SCAN  # about one pass over the queue


def test_a_key_touched_unfinished_is_held_not_queued_until_a_change_finishes_it():
    """Past ``keep`` with everything on its way, a call has nothing to look at: a queue of
    keys it could not forget cost a registry's submission ~25 µs more past its bound."""
    now, retention = touched_one_per_instant([], keep=2)
    for n, key in enumerate("abc"):
        now[0] = n
        retention.touched(key, finished=False)
    assert list(retention.due()) == [] and len(retention._queue) == 0  # nothing to scan
    now[0] = 3
    retention.touched("d")  # held: "a", "b", "c" and "d", past keep
    assert list(retention.due()) == ["d"]
    retention.touched("a")  # its last change finished it
    retention.touched("b")
    retention.touched("b", finished=False)  # and this one is on its way again
    assert list(retention.due()) == ["a"] and list(retention.due()) == []

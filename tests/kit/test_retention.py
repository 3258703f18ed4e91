"""Finished things forgotten a period of clock time after their last change, or once too many."""

from caas_sim.simulators.kit.retention import Retention


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
    now = [0.0]
    retention = Retention(lambda: now[0], keep=2)
    for n, key in enumerate("abc"):
        now[0] = n
        retention.touched(key)
    assert list(retention.due()) == ["a"]
    assert list(retention.due()) == []


def test_one_not_finished_is_looked_at_again_later_and_the_next_oldest_goes():
    now = [0.0]
    retention = Retention(lambda: now[0], keep=1)
    retention.touched("live")
    now[0] = 1
    retention.touched("done")
    now[0] = 2
    forgotten = []
    for key in retention.due():
        if key == "live":
            retention.touched(key)  # not finished: kept, queued behind the others
        else:
            forgotten.append(key)
    assert forgotten == ["done"] and list(retention.due()) == []

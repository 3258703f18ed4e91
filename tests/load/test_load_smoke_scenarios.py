"""The OTA, sales and day locustfiles cannot rot: each runs for a few seconds through `caas-sim load`.

Locust monkey-patches with gevent, so it never runs in the pytest process: the CLI runs
it as a subprocess (here, the whole CLI is one).
"""

import pytest

from tests.load.runs import run_load

pytestmark = pytest.mark.timeout(90)


def test_ota_reports_activation_latency(tmp_path):
    # distributed: the worker's users take their own vehicles (a second process's user once
    # asked for a vehicle past the fleet's end, and only an exception said so: it fails the run now)
    done, rows = run_load(tmp_path, "ota", "--users", "2", "--duration", "4s", "--fault-rate", "0.2",
                          "--processes", "3", "--peers")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "master + 2 workers" in done.stdout
    assert int(rows["activation (core clock)"]["Request Count"]) > 0
    assert int(rows["purchase"]["Failure Count"]) == 0
    core, peers = done.stdout.split("the peers' audit (the simulators' side) after the load:")
    assert "every invariant holds" in core, done.stdout[-2000:]  # audited once the queue settled
    assert "every invariant holds" in peers, done.stdout[-2000:]  # and from the simulators' side


def test_sales_are_registered_and_their_reservations_place_factory_orders(tmp_path):
    done, rows = run_load(tmp_path, "sales", "--users", "2", "--duration", "4s")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for name in ("sale", "reservation (order placed)"):
        assert int(rows[name]["Request Count"]) > 0 and int(rows[name]["Failure Count"]) == 0, rows[name]


def test_day_runs_every_user_class(tmp_path):
    done, rows = run_load(tmp_path, "day", "--users", "4", "--duration", "4s")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # Each class picks its weighted tasks at random and a loaded machine gets through few in
    # 3 s: a class counts as run when any of its requests is in the stats.
    assert {"catalogue", "own purchases", "notifications"} & rows.keys(), sorted(rows)  # Browser
    assert "purchase" in rows, sorted(rows)  # ServiceBuyer
    assert int(rows["reservation (order placed)"]["Request Count"]) > 0, sorted(rows)  # SaleMaker: sale then order
    assert any(n.startswith("webhook ") for n in rows), sorted(rows)  # WebhookSender



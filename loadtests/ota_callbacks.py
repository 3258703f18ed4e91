"""OTA callbacks at the core's receiver, from the IoT simulator itself: no purchase API needed.

The users act as a core does towards the IoT API: each asks the IoT simulator
(``--host``) to activate a feature on the next vehicle of a realistic fleet (every kind
of connectivity: always online, sleeping at night, flaky, offline for days; only a
feature the vehicle has installed). The simulator then does what it does for any core:
it waits for the vehicle, activates or fails, and calls back the core's ``otaStatus``
receiver, signed, retrying what is not acknowledged. So the core's webhook ingestion is
measured under the traffic a real fleet makes: outcomes spread over the vehicles'
latencies, failures, duplicates (``--caas-duplicate-share``, the simulator's
``callback_duplicated`` fault) and retries.

The simulator must already send its callbacks to the core under test (``caas-sim up
--core-url URL``, or ``caas-sim serve iot --webhook-url``): ``caas-sim load ota-callbacks
--target URL`` starts one so. The HTTP rows here are the requests to the simulator; what
the core did with the callbacks (acknowledgement times, delivery lag, retries) is read
from the simulator's journal by ``caas-sim load``.

    locust -f loadtests/ota_callbacks.py --host http://127.0.0.1:8103
"""

from __future__ import annotations

import uuid

import locust  # noqa: F401  first: gevent must patch ssl before anything imports it
import orjson
from locust import FastHttpUser, constant, events, task
from locust.runners import WorkerRunner

from caas_sim.loadtests import common, figures  # noqa: F401  figures: the summary, fail fast

ACTIVATE = "/ota/activate"
_vehicles = None
#: In each Idempotency-Key: a second run against the same simulator activates afresh.
_RUN = uuid.uuid4().hex[:8]


@events.test_start.add_listener
def _set_faults(environment, **_) -> None:
    """The simulator's own faults for the run: failed attempts and duplicated callbacks."""
    options = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner) or not options or not environment.host:
        return
    rules = common.ota_fault_rules(options.caas_fault_rate)
    if options.caas_duplicate_share > 0:
        rules.append({"id": "load-duplicated", "action": {"type": "callback_duplicated"},
                      "probability": options.caas_duplicate_share})
    common.set_faults(environment.host, rules)


class FleetOperator(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        global _vehicles
        if _vehicles is None:  # one stream per process, shared by its users: one activation per vehicle
            _vehicles = common.vehicle_stream(self.environment, always_online=False)
        self.vehicles = _vehicles

    @task
    def activate(self) -> None:
        profile = next(self.vehicles, None)
        if profile is None:
            raise RuntimeError("no vehicle of the target's range is left for this locust process")
        flag = profile.features[profile.index % len(profile.features)]
        body = {"vin": profile.vin, "serviceId": "load-" + flag.replace("_", "-"),
                "configuration": {"featureFlags": [flag]}, "duration": {"type": "PERMANENT"}}
        headers = {"Content-Type": "application/json", "Idempotency-Key": f"load-{_RUN}-{profile.vin}"}
        with self.client.post(ACTIVATE, data=orjson.dumps(body), headers=headers, name="activate (IoT simulator)",
                              catch_response=True) as answer:
            if answer.status_code != 202:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")

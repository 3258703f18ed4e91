"""OTA load: service purchases driven to activation, with end-to-end activation latency.

Each user buys a service for a vehicle (``POST /customers/{c}/vehicles/{vin}/purchases``,
body from contracts/core.yaml) and follows the purchase (``GET /purchases/{id}``) until
the core has processed the IoT simulator's ACTIVATED callback (``ACTIVE``), or the
core gave up (``REFUNDED``...). A core with another purchase API describes it in the
target description (``[purchase]`` of ``--caas-config``: paths, body template, the status
field and its values). Two business metrics (request type ``metric``):

- ``activation (core clock)``: ``deliveredAt - createdAt`` of the purchase, on the core's
  clock: purchase accepted to ACTIVATED callback processed, exactly, in the domain's
  time (in a scaled clock, N virtual seconds per real second);
- ``activation (observed)``: wall time from the 201 to the poll that saw ``ACTIVE``
  (includes up to one poll interval).

A purchase that does not end ACTIVE is a failure of those metrics, named by its status;
one still awaited when the run stops its users is counted apart (``figures.unfinished``).
``--caas-fault-rate R`` posts rules to the IoT simulator (``--caas-iot-url``) at start:
half of R as ``vehicle_offline``, half as ``activation_failed``; the core's retry
policy (1, 5, 15 min backoff) then shows in the latency.

    locust -f loadtests/ota.py --host http://127.0.0.1:8000 --caas-iot-url http://127.0.0.1:8103
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime

import locust  # noqa: F401  first: gevent must patch ssl before anything imports it
import orjson
from gevent import GreenletExit
from locust import FastHttpUser, constant, events, task
from locust.runners import WorkerRunner

from caas_sim.loadtests import common, figures
from caas_sim.loadtests.bodies import BodyFactory
from caas_sim.loadtests.target import fill

REFERENCE_PURCHASE = "/customers/{customerId}/vehicles/{vin}/purchases"  # its body schema in contracts/core.yaml
ACTIVATION_CORE_CLOCK = figures.metric("activation (core clock)", "core clock")
ACTIVATION_OBSERVED = figures.metric("activation (observed)", "wall")
_users = itertools.count()
_vins = None


@events.test_start.add_listener
def _set_fault_rate(environment, **_) -> None:
    options = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner) or not options or not options.caas_iot_url:
        return
    common.set_faults(options.caas_iot_url, common.ota_fault_rules(options.caas_fault_rate))


def _instant(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class ServiceBuyer(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        options = common.options(self.environment)
        target = common.target(self.environment)
        self.purchase, self.customer = target.purchase, target.keys.customer_id
        self.poll, self.timeout = options.caas_poll_interval, options.caas_activation_timeout
        global _vins
        if _vins is None:  # one stream per process, shared by its users: one purchase per vehicle
            _vins = common.vehicle_stream(self.environment, always_online=True)
        self.vins = _vins
        self.bodies = BodyFactory(options.caas_seed + next(_users))
        self.headers = {"Authorization": f"Bearer {target.keys.customer}", "Content-Type": "application/json"}

    def _body(self, vin: str, service: str) -> dict:
        values = {"vin": vin, "serviceId": service, "customerId": self.customer}
        if self.purchase.body is not None:
            return fill(self.purchase.body, values)
        return self.bodies.request("core", "post", REFERENCE_PURCHASE, serviceId=service, durationType="PERMANENT",
                                   paymentMethod={"type": "CARD", "token": "pm_card_visa"})

    @task
    def buy_and_wait(self) -> None:
        profile = next(self.vins, None)
        if profile is None:
            raise RuntimeError("no vehicle of the target's range is left for this locust process")
        p, vin = self.purchase, profile.vin
        body = self._body(vin, p.services[hash(vin) % len(p.services)])
        with self.client.post(fill(p.path, {"customerId": self.customer, "vin": vin}), data=orjson.dumps(body),
                              headers=self.headers, name="purchase", catch_response=True) as answer:
            if answer.status_code != p.created_status:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
                return
            view = answer.json()
        accepted = time.perf_counter()
        purchase_id, status = str(view[p.id_field]), view.get(p.status_field)
        try:
            while status not in p.active and status not in p.ended and time.perf_counter() - accepted < self.timeout:
                time.sleep(self.poll)
                with self.client.get(fill(p.status_path, {p.id_field: purchase_id, "customerId": self.customer}),
                                     headers=self.headers, name="purchase status", catch_response=True) as answer:
                    if answer.status_code != 200:
                        answer.failure(f"{answer.status_code}")
                        continue
                    view = answer.json()
                    status = view.get(p.status_field)
        except GreenletExit:  # the run ended (past locust's stop timeout) with this purchase still awaited
            figures.unfinished(ACTIVATION_OBSERVED)
            raise
        observed = (time.perf_counter() - accepted) * 1000
        error = None if status in p.active else RuntimeError(f"ended {status}")
        figures.record(ACTIVATION_OBSERVED, observed, error)
        if view.get(p.delivered_field) and view.get(p.created_field):
            figures.record(ACTIVATION_CORE_CLOCK,
                           (_instant(view[p.delivered_field]) - _instant(view[p.created_field])) * 1000, error)
        elif error is not None:
            figures.record(ACTIVATION_CORE_CLOCK, observed, error)

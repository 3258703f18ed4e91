"""OTA load: service purchases driven to activation, with end-to-end activation latency.

Each user buys a service for a vehicle (``POST /customers/{c}/vehicles/{vin}/purchases``,
body from contracts/core.yaml) and follows the purchase (``GET /purchases/{id}``) until
the core has processed the IoT simulator's ACTIVATED callback (``ACTIVE``), or the
core gave up (``REFUNDED``...). Two custom metrics, request type ``OTA``:

- ``activation (core clock)``: ``deliveredAt - createdAt`` of the purchase, on the core's
  clock: purchase accepted to ACTIVATED callback processed, exactly, in the domain's
  time (in a scaled clock, N virtual seconds per real second);
- ``activation (observed)``: wall time from the 201 to the poll that saw ``ACTIVE``
  (includes up to one poll interval).

A purchase that does not end ACTIVE is a failure of those metrics, named by its status.
``--caas-fault-rate R`` posts rules to the IoT simulator (``--caas-iot-url``) at start:
half of R as ``vehicle_offline``, half as ``activation_failed``; the core's retry
policy (1, 5, 15 min backoff) then shows in the latency.

    locust -f loadtests/ota.py --host http://127.0.0.1:8000 --caas-iot-url http://127.0.0.1:8103
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime

import locust  # noqa: F401  first: gevent must patch ssl before anything imports it
import orjson
import requests
from locust import FastHttpUser, constant, events, task
from locust.runners import WorkerRunner

from caas_sim.loadtests import common
from caas_sim.loadtests.bodies import BodyFactory

PURCHASE = "/customers/{customerId}/vehicles/{vin}/purchases"
SERVICES = ("heated-seats", "premium-audio")  # no maintenance gate: the OTA path is what is measured
DONE = {"ACTIVE", "REFUNDED", "ACTIVATION_FAILED", "FAILED", "WITHDRAWN", "CANCELLED"}
_users = itertools.count()
_vins: Iterator[str] | None = None


@events.test_start.add_listener
def _set_fault_rate(environment, **_) -> None:
    options = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner) or not options or not options.caas_iot_url:
        return
    base = options.caas_iot_url.rstrip("/")
    requests.delete(f"{base}/__admin/faults", timeout=10)
    rate = options.caas_fault_rate
    if rate > 0:
        match = {"method": "POST", "path": "/ota/activate"}
        rules = [{"id": "load-offline", "match": match, "action": {"type": "vehicle_offline"},
                  "probability": rate / 2},
                 {"id": "load-failed", "match": match, "probability": rate / 2,
                  "action": {"type": "activation_failed", "params": {"errorCode": "ECU_ERROR"}}}]
        requests.post(f"{base}/__admin/faults", json={"rules": rules}, timeout=10).raise_for_status()


def _instant(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class ServiceBuyer(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        options = common.options(self.environment)
        self.key, self.customer = options.caas_api_key, options.caas_customer
        self.poll, self.timeout = options.caas_poll_interval, options.caas_activation_timeout
        seed = options.caas_seed
        number = next(_users)
        global _vins
        if _vins is None:  # one stream per process, shared by its users: one purchase per vehicle
            _vins = common.online_vins(seed, getattr(self.environment.runner, "worker_index", 0) or 0)
        self.vins = _vins
        self.bodies = BodyFactory(seed + number)
        self.headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}

    @task
    def buy_and_wait(self) -> None:
        vin = next(self.vins, None)
        if vin is None:
            raise RuntimeError("no vehicle of the fleet is left for this locust process")
        body = self.bodies.request("core", "post", PURCHASE, serviceId=SERVICES[hash(vin) % len(SERVICES)],
                                   durationType="PERMANENT", paymentMethod={"type": "CARD", "token": "pm_card_visa"})
        with self.client.post(PURCHASE.format(customerId=self.customer, vin=vin), data=orjson.dumps(body),
                              headers=self.headers, name="purchase", catch_response=True) as answer:
            if answer.status_code != 201:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
                return
            purchase = answer.json()
        accepted = time.perf_counter()
        status, view = purchase["status"], purchase
        while status not in DONE and time.perf_counter() - accepted < self.timeout:
            time.sleep(self.poll)
            with self.client.get(f"/purchases/{purchase['purchaseId']}", headers=self.headers,
                                 name="purchase status", catch_response=True) as answer:
                if answer.status_code != 200:
                    answer.failure(f"{answer.status_code}")
                    continue
                view = answer.json()
                status = view["status"]
        observed = (time.perf_counter() - accepted) * 1000
        error = None if status == "ACTIVE" else RuntimeError(f"ended {status}")
        core_clock = ((_instant(view["deliveredAt"]) - _instant(view["createdAt"])) * 1000
                      if view.get("deliveredAt") else observed)
        for name, value in (("activation (core clock)", core_clock), ("activation (observed)", observed)):
            events.request.fire(request_type="OTA", name=name, response_time=value, response_length=0,
                                exception=error, context={})

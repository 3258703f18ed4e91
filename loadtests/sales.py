"""Vehicle sales under load: a dealership registers a sale, its customer pays the reservation.

The reservation is synchronous and places the factory order before it answers
(``ORDER_PLACED``, or ``ORDER_QUEUED`` when the factory is unreachable), so its latency is
the sale path's: payment gateway, then factory. An ``ORDER_REJECTED`` answer counts as a
failure. Bodies come from contracts/core.yaml (``SaleRequest``, ``PaymentRequest``), with
faker for the names, and the plan's domain-bound parts taken from the contract's own
example of ``POST /sales``.

    locust -f loadtests/sales.py --host http://127.0.0.1:8000
"""

from __future__ import annotations

import itertools

import locust  # noqa: F401  first: gevent must patch ssl before anything imports it
import orjson
from locust import FastHttpUser, between, events, task

from caas_sim.loadtests import common, figures  # noqa: F401  figures: the summary, fail fast
from caas_sim.loadtests.bodies import BodyFactory, request_example

SALES = "/sales"
RESERVATION = "/sales/{saleId}/reservation"
PLACED = {"ORDER_PLACED", "ORDER_QUEUED"}  # queued: the factory is down, the order retried later
#: Generated, a plan's names: the rest comes from the contract's example (a Spanish owner with a
#: valid tax id, a model with options the factory builds, prices in euros).
FAKED = ("firstName", "lastName", "email")
_users = itertools.count()


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--caas-dealership-key", env_var="CAAS_LOAD_DEALERSHIP_KEY", default=None,
                        help="dealership API key of the core (registers the sales); overrides the config")


class SaleMaker(FastHttpUser):
    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        options, keys = common.options(self.environment), common.target(self.environment).keys
        self.customer = keys.customer_id
        customer_key, dealership_key = keys.customer, keys.dealership
        self.bodies = BodyFactory(options.caas_seed + next(_users))
        example = request_example("core", "post", SALES)
        owner = {k: v for k, v in example["customer"].items() if k not in FAKED}
        self.plan = {**example, "customer": {**owner, "customerId": self.customer}}
        self.as_dealership = {"Authorization": f"Bearer {dealership_key}", "Content-Type": "application/json"}
        self.as_customer = {"Authorization": f"Bearer {customer_key}", "Content-Type": "application/json"}

    @task
    def sell(self) -> None:
        plan = self.bodies.request("core", "post", SALES, **self.plan)
        with self.client.post(SALES, data=orjson.dumps(plan), headers=self.as_dealership, name="sale",
                              catch_response=True) as answer:
            if answer.status_code != 201:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
                return
            sale_id = answer.json()["saleId"]
        payment = self.bodies.request("core", "post", RESERVATION,
                                      paymentMethod={"type": "CARD", "token": "pm_card_visa"})
        with self.client.post(RESERVATION.format(saleId=sale_id), data=orjson.dumps(payment),
                              headers=self.as_customer, name="reservation (order placed)",
                              catch_response=True) as answer:
            if answer.status_code != 200:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
            elif (status := answer.json()["status"]) not in PLACED:
                answer.failure(f"ended {status}")

"""A realistic day: purchases, webhooks and browsing together, following a daily curve.

One day is compressed into ``--caas-day-length`` seconds (default 300). Users follow
the curve of a day of a car maker's platform: quiet at night, a morning and an evening
peak, lunch in between; the last twentieth of the day is month-end billing, when the
payment gateway's settlements arrive in a burst (the webhook senders take over). The
mix: ``SaleMaker`` (vehicle sales: registered, reservation paid, factory order placed,
loadtests/sales.py), ``ServiceBuyer`` (purchases followed to activation,
loadtests/ota.py), ``WebhookSender`` (factory, payment and OTA callbacks,
loadtests/webhooks.py) and ``Browser`` (catalogue, own purchases and notifications). ``--caas-peak-users`` sets
the height of the curve (locust's ``--users`` is ignored with a shape).

    locust -f loadtests/day.py --host http://127.0.0.1:8000 --caas-iot-url http://127.0.0.1:8103
"""

from __future__ import annotations

import math

import locust  # noqa: F401  first: gevent must patch ssl before anything imports it
from locust import FastHttpUser, LoadTestShape, between, events, task

from caas_sim.loadtests import common
from caas_sim.loadtests.ota import ServiceBuyer
from caas_sim.loadtests.sales import SaleMaker
from caas_sim.loadtests.webhooks import WebhookSender

__all__ = ["Browser", "DayShape", "SaleMaker", "ServiceBuyer", "WebhookSender"]

#: Share of the peak per hour of the day (0-23): night, morning peak, lunch, evening peak.
CURVE = [0.05, 0.03, 0.02, 0.02, 0.03, 0.08, 0.2, 0.5, 0.9, 1.0, 0.7, 0.6,
         0.75, 0.7, 0.55, 0.5, 0.6, 0.8, 1.0, 0.95, 0.7, 0.45, 0.25, 0.1]


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--caas-day-length", type=float, env_var="CAAS_LOAD_DAY_LENGTH", default=300.0,
                        help="wall seconds one simulated day lasts")
    parser.add_argument("--caas-peak-users", type=int, env_var="CAAS_LOAD_PEAK_USERS", default=20,
                        help="users at the busiest hour")


class Browser(FastHttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        keys = common.target(self.environment).keys
        self.customer = keys.customer_id
        self.headers = {"Authorization": f"Bearer {keys.customer}"}

    @task(3)
    def catalogue(self) -> None:
        self.client.get("/catalogue/services", headers=self.headers, name="catalogue")

    @task(1)
    def own_purchases(self) -> None:
        self.client.get(f"/customers/{self.customer}/purchases", headers=self.headers, name="own purchases")

    @task(1)
    def notifications(self) -> None:
        self.client.get(f"/customers/{self.customer}/notifications", headers=self.headers, name="notifications")


class DayShape(LoadTestShape):
    """Users and the mix per moment of the compressed day; stops at its end."""

    def tick(self):
        options = common.options(self.runner.environment if self.runner else None)
        length, peak = options.caas_day_length, options.caas_peak_users
        elapsed = self.get_run_time()
        if elapsed >= length:
            return None
        hour = elapsed / length * 24
        low, high = CURVE[int(hour) % 24], CURVE[(int(hour) + 1) % 24]
        level = low + (high - low) * (hour - int(hour))  # smooth between hours
        users = max(4, math.ceil(peak * level))  # at least one of each class
        if hour >= 24 * 0.95:  # month-end billing: the gateway's settlement burst
            return users, users, [WebhookSender, Browser]
        return users, users, [SaleMaker, ServiceBuyer, WebhookSender, Browser]

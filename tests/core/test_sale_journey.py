"""A vehicle sale end to end, in virtual time: the core against the running factory,
payment gateway and national registry simulators (issue 6)."""

import time

import aiohttp
import pytest

from scenarios.stack import Stack
from tests.core.test_service_path import POSTGRES_URL, database_url  # noqa: F401  (fixture)

KEYS = {"k-c1": {"role": "customer", "subject": "c-1"}, "k-c2": {"role": "customer", "subject": "c-2"},
        "k-ops": {"role": "operator", "subject": "ops"}, "k-mad": {"role": "dealership", "subject": "ES-MAD-001"}}
for magic in ("REJECT", "UNAVAILABLE", "QC-FAIL", "WEBHOOK-DUP", "WEBHOOK-REORDER", "WEBHOOK-LOST"):
    KEYS[f"k-{magic.lower()}"] = {"role": "dealership", "subject": f"TEST-{magic}"}
CARD = {"type": "CARD", "token": "pm_card_visa"}
SERVICES = ["factory", "payments", "registry-es", "registry-fr", "registry-de", "registry-uk", "iot", "vss"]
#: A valid owner per country: address and a tax id with nothing magic about it.
OWNERS = {
    "ES": ({"line1": "Calle de Alcalá 123", "city": "Madrid", "postalCode": "28009", "country": "ES"}, "12345678Z"),
    "FR": ({"line1": "12 rue de Rivoli", "city": "Paris", "postalCode": "75001", "country": "FR"}, "1234567890123"),
    "DE": ({"line1": "Marienplatz 1", "city": "München", "postalCode": "80331", "country": "DE"}, "86095742719"),
    "GB": ({"line1": "10 Downing Street", "city": "London", "postalCode": "SW1A 2AA", "country": "GB"}, "AB123456C"),
}


def as_(key):
    return {"Authorization": f"Bearer {key}"}


def plan(country="ES", *, tax_id=None, last_name="García", customer="c-1", **extra):
    address, valid_tax_id = OWNERS[country]
    currency = "GBP" if country == "GB" else "EUR"
    return {"customer": {"customerId": customer, "firstName": "Lucía", "lastName": last_name,
                         "email": "lucia@example.com", "taxId": tax_id or valid_tax_id, "dateOfBirth": "1985-04-12",
                         "address": address},
            "model": "ZEPHYR-EV", "options": ["PAINT-GLACIER-BLUE", "WHEELS-18"],
            "price": {"value": 3_850_000, "currency": currency}, "reservation": {"value": 150_000, "currency": currency},
            "insurance": {"provider": "Mapfre", "policyNumber": "POL-2026-0001", "validFrom": "2026-01-01"},
            "dealership": {"city": "Madrid"}, **extra}


@pytest.fixture
async def world(tmp_path):
    stack = Stack(services=SERVICES, seed=0, core={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'core.db'}",
                                                   "api_keys": KEYS})
    async with stack, aiohttp.ClientSession(stack.url("core")) as http:
        yield stack, Api(http)
        assert stack.violations() == []  # the core broke no simulator's contract


class Api:
    def __init__(self, http):
        self.http = http

    async def call(self, method, path, key, body=None):
        async with self.http.request(method, path, headers=as_(key), json=body) as r:
            return r.status, await r.json()

    async def sell(self, dealership="k-mad", **kwargs):
        status, sale = await self.call("POST", "/sales", dealership, plan(**kwargs))
        assert status == 201, sale
        return sale["saleId"]

    async def reserve(self, sale_id, token="pm_card_visa", key="k-c1"):
        return await self.call("POST", f"/sales/{sale_id}/reservation", key,
                               {"paymentMethod": {"type": "CARD", "token": token}})

    async def pay_final(self, sale_id, token="pm_card_visa", key="k-c1"):
        return await self.call("POST", f"/sales/{sale_id}/final-payment", key,
                               {"paymentMethod": {"type": "CARD", "token": token}})

    async def sale(self, sale_id, key="k-c1"):
        status, body = await self.call("GET", f"/sales/{sale_id}", key)
        assert status == 200, body
        return body

    async def file(self, sale_id, key="k-c1"):
        return (await self.call("GET", f"/sales/{sale_id}/file", key))[1]

    async def templates(self, customer="c-1", key="k-c1"):
        status, body = await self.call("GET", f"/customers/{customer}/notifications", key)
        return [n["template"] for n in body["notifications"] if n["channel"] == "email"]


async def until(stack, api, sale_id, status, *, within="90d", step="1d"):
    """Advance the world day by day until the sale reaches ``status``."""
    from simulators.kit.durations import parse_duration

    deadline = stack.clock.now() + parse_duration(within)
    while stack.clock.now() < deadline:
        sale = await api.sale(sale_id)
        if sale["status"] == status:
            return sale
        await stack.advance(step)
    raise AssertionError(f"sale {sale_id} never reached {status}: {await api.sale(sale_id)}")


async def to_final_payment(stack, api, **kwargs):
    sale_id = await api.sell(**kwargs)
    status, sale = await api.reserve(sale_id)
    assert status == 200 and sale["status"] == "ORDER_PLACED", sale
    await until(stack, api, sale_id, "AWAITING_FINAL_PAYMENT")
    return sale_id


async def test_full_journey_from_sale_to_delivery_in_virtual_time(world):
    stack, api = world
    wall, start = time.perf_counter(), stack.clock.now()
    sale_id = await to_final_payment(stack, api)
    status, sale = await api.pay_final(sale_id)
    assert status == 200 and sale["status"] == "REGISTRATION", sale
    sale = await until(stack, api, sale_id, "DELIVERED", within="30d", step="6h")
    assert sale["registration"]["status"] == "PLATE_ASSIGNED" and sale["registration"]["plateNumber"]
    days = (stack.clock.now() - start) / 86400
    assert 20 < days < 90, days
    told = await api.templates()
    assert told[:2] == ["RESERVATION_REQUESTED", "ORDER_CONFIRMED"]
    for template in ("VEHICLE_SHIPPED", "VEHICLE_AVAILABLE_FINAL_PAYMENT_REQUESTED",
                     "FINAL_PAYMENT_RECEIVED_REGISTRATION_STARTED", "VEHICLE_REGISTERED_READY_FOR_DELIVERY",
                     "HOME_DELIVERY_SCHEDULED", "DELIVERED_MOBILE_APP_LINKING"):
        assert template in told, (template, told)
    file = await api.file(sale_id)
    assert [p["kind"] for p in file["payments"]] == ["RESERVATION", "FINAL"]
    assert sum(p["amount"]["value"] for p in file["payments"]) == 3_850_000
    events = [e["event"] for e in file["history"]]
    assert events.index("ORDER_PLACED") < events.index("FINAL_PAYMENT_RECEIVED") < events.index("DELIVERED")
    print(f"sale to delivery: {days:.1f} virtual days in {time.perf_counter() - wall:.2f} s of wall time")

"""A vehicle sale end to end, in virtual time: the core against the running factory,
payment gateway and national registry simulators (issue 6)."""

import asyncio
import time

import aiohttp
import pytest

from caas_sim import catalogue
from caas_sim.scenarios.stack import Stack
from tests.core.test_purchase_payment import DiesAfterTheCharge

KEYS = {"k-c1": {"role": "customer", "subject": "c-1"}, "k-c2": {"role": "customer", "subject": "c-2"},
        "k-ops": {"role": "operator", "subject": "ops"}, "k-mad": {"role": "dealership", "subject": "ES-MAD-001"}}
for magic in ("REJECT", "UNAVAILABLE", "QC-FAIL", "WEBHOOK-DUP", "WEBHOOK-REORDER", "WEBHOOK-LOST", "SLOW-NO-ORDER"):
    KEYS[f"k-{magic.lower()}"] = {"role": "dealership", "subject": f"TEST-{magic}"}
CARD = {"type": "CARD", "token": "pm_card_visa"}
SERVICES = list(catalogue.NAMES)
#: A valid owner per country: address and a tax id with nothing magic about it.
OWNERS = {
    "ES": ({"line1": "Calle de Alcalá 123", "city": "Madrid", "postalCode": "28009", "country": "ES"}, "12345678Z"),
    "FR": ({"line1": "12 rue de Rivoli", "city": "Paris", "postalCode": "75001", "country": "FR"}, "1234567890066"),
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


async def _world(url):
    stack = Stack(services=SERVICES, seed=0, core={"database_url": url, "api_keys": KEYS})
    async with stack, aiohttp.ClientSession(stack.url("core")) as http:
        yield stack, Api(http)
        assert stack.violations() == []  # the core broke no simulator's contract
        async with http.get("/__admin/audit") as r:  # and every invariant of the core holds
            assert (await r.json())["violations"] == []


@pytest.fixture
async def world(tmp_path):
    async for w in _world(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"):
        yield w


@pytest.fixture
async def any_db_world(database_url):
    async for w in _world(database_url):
        yield w


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
        _status, body = await self.call("GET", f"/customers/{customer}/notifications", key)
        return [n["template"] for n in body["notifications"] if n["channel"] == "email"]


async def until(stack, api, sale_id, status, *, within="90d"):
    """Advance the world event by event until the sale reaches ``status``."""
    from caas_sim.simulators.kit.durations import parse_duration

    deadline = stack.clock.now() + parse_duration(within)
    while stack.clock.now() < deadline:
        sale = await api.sale(sale_id)
        if sale["status"] == status:
            return sale
        due = await stack.next_due()
        await stack.advance(max(1.0, (deadline if due is None else min(due, deadline)) - stack.clock.now()))
    raise AssertionError(f"sale {sale_id} never reached {status}: {await api.sale(sale_id)}")


async def to_final_payment(stack, api, **kwargs):
    sale_id = await api.sell(**kwargs)
    status, sale = await api.reserve(sale_id)
    assert status == 200 and sale["status"] == "ORDER_PLACED", sale
    await until(stack, api, sale_id, "AWAITING_FINAL_PAYMENT")
    return sale_id


async def test_full_journey_from_sale_to_delivery_in_virtual_time(any_db_world):
    stack, api = any_db_world
    wall, start = time.perf_counter(), stack.clock.now()
    sale_id = await to_final_payment(stack, api)
    status, sale = await api.pay_final(sale_id)
    assert status == 200 and sale["status"] == "REGISTRATION", sale
    sale = await until(stack, api, sale_id, "DELIVERED", within="30d")
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


async def dealership_templates(api, dealership="ES-MAD-001", key="k-mad"):
    status, body = await api.call("GET", f"/dealerships/{dealership}/notifications", key)
    assert status == 200, body
    return [n["template"] for n in body["notifications"]]


# --- the factory -----------------------------------------------------------------------

async def test_factory_down_at_reservation_the_order_is_queued_and_placed_when_it_recovers(world):
    stack, api = world
    sale_id = await api.sell(dealership="k-unavailable")  # 503 on the first two attempts
    status, sale = await api.reserve(sale_id)
    assert status == 200 and sale["status"] == "ORDER_QUEUED" and sale["orderAttempts"] == 1
    sale = await until(stack, api, sale_id, "ORDER_PLACED", within="1h")
    assert sale["orderAttempts"] == 3 and sale["orderId"]
    assert (await api.templates())[:3] == ["RESERVATION_REQUESTED", "ORDER_QUEUED", "ORDER_CONFIRMED"]
    orders = stack.running["factory"].app  # one order for the paid reservation, however many attempts
    placed = [e for e in stack.journal() if e.get("service") == "factory" and e.get("method") == "POST"
              and e.get("path") == "/orders" and e.get("status") == 201]
    assert len(placed) == 1, (orders, placed)


async def test_factory_down_longer_than_the_limit_suspends_sales_until_it_is_back(world):
    stack, api = world
    sale_id = await api.sell()
    stack.service("factory").faults.add({"id": "down", "action": {"type": "factory_unavailable"}})
    status, sale = await api.reserve(sale_id)
    assert sale["status"] == "ORDER_QUEUED"
    await stack.advance("5h")  # past the 4 h the specification accepts
    status, refused = await api.call("POST", "/sales", "k-mad", plan())
    assert status == 503 and refused["type"].endswith("sales-suspended"), refused
    assert "SALES_SUSPENDED" in await dealership_templates(api)
    stack.service("factory").faults.clear()
    await until(stack, api, sale_id, "ORDER_PLACED", within="2h")
    assert "SALES_RESUMED" in await dealership_templates(api)
    await api.sell()  # sales are open again


@pytest.mark.parametrize("ended", ["cancelled", "rejected"])
async def test_an_outage_ends_with_the_last_order_waiting_on_it_and_a_failure_days_later_starts_another(
        world, ended):
    stack, api = world
    key = "k-mad" if ended == "cancelled" else "k-reject"  # the factory rejects TEST-REJECT's orders
    first = await api.sell(dealership=key)
    stack.service("factory").faults.add({"id": "down", "action": {"type": "factory_unavailable"},
                                         **({"times": 1} if ended == "rejected" else {})})
    status, sale = await api.reserve(first)
    assert sale["status"] == "ORDER_QUEUED", sale  # the outage begins
    if ended == "cancelled":
        status, sale = await api.call("POST", f"/sales/{first}/cancellation", key, {"reason": "the customer left"})
        assert status == 200 and sale["status"] == "CANCELLED", sale
    else:  # its retry reaches the factory, which refuses the order
        sale = await until(stack, api, first, "ORDER_REJECTED", within="10m")
    await stack.advance("2d")  # nothing waits on the factory meanwhile
    stack.service("factory").faults.clear()
    stack.service("factory").faults.add({"id": "down", "action": {"type": "factory_unavailable"}})
    second = await api.sell()
    status, sale = await api.reserve(second)
    assert sale["status"] == "ORDER_QUEUED", sale  # one failed order: an outage of a moment, not of 2 days
    status, third = await api.call("POST", "/sales", "k-mad", plan())
    assert status == 201, third
    assert "SALES_SUSPENDED" not in await dealership_templates(api)


async def core_next_due(stack):
    async with aiohttp.ClientSession() as http, http.get(stack.url("core") + "/__admin/health") as r:
        return (await r.json())["nextDue"]


async def test_a_suspension_ends_once_the_factory_answers_though_no_order_is_left_to_place(world):
    stack, api = world
    sale_id = await api.sell(dealership="k-slow-no-order")  # every placement times out, no order made
    status, sale = await api.reserve(sale_id)
    assert status == 200 and sale["status"] == "ORDER_QUEUED", sale
    await stack.advance("4h30m")
    status, refused = await api.call("POST", "/sales", "k-mad", plan())
    assert status == 503 and refused["type"].endswith("sales-suspended"), refused
    told = lambda: dealership_templates(api, "TEST-SLOW-NO-ORDER", "k-slow-no-order")
    assert await told() == ["SALES_SUSPENDED"]
    status, cancelled = await api.call("POST", f"/sales/{sale_id}/cancellation", "k-slow-no-order",
                                       {"reason": "the customer gave up waiting"})
    assert status == 200 and cancelled["status"] == "CANCELLED", cancelled
    await stack.advance("30m")  # a probe interval (15 min) and more: the catalogue answers
    assert await told() == ["SALES_SUSPENDED", "SALES_RESUMED"]
    await api.sell()  # sales are open again, with no order placed
    assert await core_next_due(stack) is None  # and nothing keeps probing the factory


async def test_an_order_the_factory_rejects_reopens_the_sales_its_outage_suspended(world):
    """A rejection is an answer: the factory's order system is back. Before, sales stayed
    suspended until the next probe (15 min later) found nothing left to place."""
    stack, api = world
    sale_id = await api.sell(dealership="k-reject")  # the factory rejects TEST-REJECT's orders
    stack.service("factory").faults.add({"id": "down", "action": {"type": "factory_unavailable"}})
    status, sale = await api.reserve(sale_id)
    assert status == 200 and sale["status"] == "ORDER_QUEUED", sale
    await stack.advance("4h30m")
    status, refused = await api.call("POST", "/sales", "k-mad", plan())
    assert status == 503 and refused["type"].endswith("sales-suspended"), refused
    stack.service("factory").faults.clear()
    await until(stack, api, sale_id, "ORDER_REJECTED", within="1h")
    status, sale = await api.call("POST", "/sales", "k-mad", plan())
    assert status == 201, sale
    assert await dealership_templates(api, "TEST-REJECT", "k-reject") == ["SALES_SUSPENDED", "SALES_RESUMED"]


async def test_order_rejected_tells_the_customer_and_refunds_the_reservation(world):
    _stack, api = world
    sale_id = await api.sell(dealership="k-reject")
    status, sale = await api.reserve(sale_id)
    assert status == 200 and sale["status"] == "ORDER_REJECTED"
    file = await api.file(sale_id)
    assert [r["amount"]["value"] for r in file["refunds"]] == [150_000]
    assert "ORDER_REJECTED_RESERVATION_REFUNDED" in await api.templates()


async def test_quality_control_rework_loop_is_followed(world):
    stack, api = world
    sale_id = await to_final_payment(stack, api, dealership="k-qc-fail")
    statuses = [e["detail"]["status"] for e in (await api.file(sale_id))["history"]
                if e["event"] == "FACTORY_NOTIFICATION" and e["detail"]["notification"] == "STATUS_CHANGED"]
    qc = statuses.index("QUALITY_CONTROL")
    assert statuses[qc + 1] == "PRODUCTION_IN_PROGRESS" and "QUALITY_CONTROL" in statuses[qc + 2:]


@pytest.mark.parametrize("dealership", ["k-webhook-dup", "k-webhook-reorder", "k-webhook-lost"])
async def test_duplicated_reordered_or_late_status_webhooks_never_move_the_sale_back(world, dealership):
    stack, api = world
    sale_id = await api.sell(dealership=dealership)
    await api.reserve(sale_id)
    seen = []
    for _ in range(60):
        seen.append((await api.sale(sale_id))["status"])
        if seen[-1] == "AWAITING_FINAL_PAYMENT":
            break
        await stack.advance("12h")
    flow = ["ORDER_PLACED", "PRODUCTION_SCHEDULED", "PRODUCTION_IN_PROGRESS", "QUALITY_CONTROL", "READY_FOR_SHIPMENT",
            "IN_TRANSIT", "AWAITING_FINAL_PAYMENT"]
    ranks = [flow.index(s) for s in seen]
    assert ranks == sorted(ranks) and seen[-1] == "AWAITING_FINAL_PAYMENT", seen
    outcomes = [e["detail"]["outcome"] for e in (await api.file(sale_id))["history"]
                if e["event"] == "FACTORY_NOTIFICATION"]
    if dealership == "k-webhook-reorder":  # duplicates never get this far: the inbox drops them
        assert "stale" in outcomes, outcomes


# --- the final payment ------------------------------------------------------------------

async def test_final_payment_declined_returns_the_vehicle_to_stock_and_the_reservation_is_lost(world):
    stack, api = world
    sale_id = await to_final_payment(stack, api)
    status, problem = await api.pay_final(sale_id, token="pm_card_insufficient_funds")
    assert status == 422 and problem["saleStatus"] == "RETURNED_TO_STOCK", problem
    assert (await api.sale(sale_id))["status"] == "RETURNED_TO_STOCK"
    assert (await api.file(sale_id))["refunds"] == []  # the customer loses the reservation
    assert "FINAL_PAYMENT_FAILED_RESERVATION_LOST" in await api.templates()
    assert "VEHICLE_UNASSIGNED_IN_STOCK" in await dealership_templates(api)
    status, again = await api.pay_final(sale_id)
    assert status == 409, again
    # its refund is an administrator's call (the specification's refund flow): a ticket, no refund
    [ticket] = (await api.call("GET", "/support/tickets", "k-ops"))[1]["tickets"]
    assert ticket["subject"].startswith(f"Review the reservation signal of sale {sale_id}")
    assert ticket["diagnostics"]["saleId"] == sale_id and ticket["diagnostics"]["amount"]["value"] > 0
    history = [e["event"] for e in (await api.file(sale_id))["history"]]
    assert "RESERVATION_REVERSAL_REVIEW" in history
    await stack.advance("3d")
    assert (await api.file(sale_id))["refunds"] == []


# --- registration, per country ----------------------------------------------------------

async def registered(stack, api, country, tax_id=None, **kwargs):
    sale_id = await to_final_payment(stack, api, country=country, tax_id=tax_id, **kwargs)
    status, sale = await api.pay_final(sale_id)
    assert status == 200, sale
    await stack.advance("1h")
    return sale_id


@pytest.mark.parametrize("country", ["ES", "FR", "DE", "GB"])
async def test_each_country_registers_the_vehicle_and_it_is_delivered(world, country):
    stack, api = world
    sale_id = await registered(stack, api, country)
    sale = await until(stack, api, sale_id, "DELIVERED", within="30d")
    assert sale["registration"]["status"] == "PLATE_ASSIGNED" and sale["registration"]["plateNumber"]


MAGIC = {"ES": ("00000001R", "00000002W", "00000003A"), "FR": ("0000000001001", "0000000002002", "0000000003003"),
         "DE": ("12345678911", "12345678920", "12345678938"), "GB": ("AA000001A", "AA000002A", "AA000003A")}


@pytest.mark.parametrize("country", ["ES", "DE", "GB"])
async def test_additional_information_is_supplied_and_the_registration_goes_on(world, country):
    stack, api = world
    sale_id = await registered(stack, api, country, tax_id=MAGIC[country][0])
    sale = await until(stack, api, sale_id, "DELIVERED", within="30d")
    events = [e["event"] for e in (await api.file(sale_id))["history"]]
    assert "REGISTRATION_INFO_PROVIDED" in events and sale["registration"]["status"] == "PLATE_ASSIGNED"
    assert "REGISTRATION_ADDITIONAL_INFO_REQUESTED" in await api.templates()


async def test_a_value_only_the_customer_has_goes_through_the_dealership_staff(world):
    stack, api = world
    stack.service("registry-fr").faults.add({"id": "licence", "times": 1, "action": {
        "type": "additional_info_required", "params": {"fields": ["owner.driverLicense"]}}})
    sale_id = await registered(stack, api, "FR")
    sale = await until(stack, api, sale_id, "REGISTRATION", within="1d")
    sale = await api.sale(sale_id)
    assert sale["registration"]["status"] == "ADDITIONAL_INFO_REQUIRED", sale
    assert sale["registration"]["missingValues"] == ["owner.driverLicense"]
    assert "REGISTRATION_INFO_REQUIRED" in await dealership_templates(api)
    status, problem = await api.call("POST", f"/sales/{sale_id}/registration/additional-info", "k-mad", {"values": {}})
    assert status == 422 and problem["missing"] == ["owner.driverLicense"]
    status, sale = await api.call("POST", f"/sales/{sale_id}/registration/additional-info", "k-mad",
                                  {"values": {"owner.driverLicense": "123456789012"}})
    assert status == 200, sale
    await until(stack, api, sale_id, "DELIVERED", within="30d")


@pytest.mark.parametrize("country", ["ES", "GB"])
async def test_rejected_registration_is_corrected_and_resubmitted(world, country):
    stack, api = world
    sale_id = await registered(stack, api, country, tax_id=MAGIC[country][1])
    for _ in range(30):
        sale = await api.sale(sale_id)
        if sale["registration"]["status"] == "REJECTED":
            break
        await stack.advance("12h")
    assert sale["registration"]["rejection"]["code"], sale
    assert "REGISTRATION_REJECTED" in await dealership_templates(api)
    assert "REGISTRATION_ISSUE_DEALERSHIP_WILL_CONTACT" in await api.templates()
    status, sale = await api.call("POST", f"/sales/{sale_id}/registration/resubmission", "k-mad",
                                  {"customer": {"taxId": OWNERS[country][1]}})
    assert status == 202, sale
    await until(stack, api, sale_id, "DELIVERED", within="30d")


async def test_invalid_data_is_corrected_by_the_staff_and_resubmitted(world):
    stack, api = world
    stack.service("registry-es").faults.add({"id": "bad-tax-id", "times": 1, "action": {
        "type": "invalid_data", "params": {"field": "owner.taxId", "message": "does not match the name"}}})
    sale_id = await registered(stack, api, "ES")
    sale = await until(stack, api, sale_id, "REGISTRATION", within="1d")
    sale = await api.sale(sale_id)
    assert sale["registration"]["status"] == "INVALID_DATA", sale
    assert "REGISTRATION_DATA_TO_CORRECT" in await dealership_templates(api)
    status, sale = await api.call("POST", f"/sales/{sale_id}/registration/resubmission", "k-mad",
                                  {"customer": {"lastName": "García López"}})
    assert status == 202, sale
    await until(stack, api, sale_id, "DELIVERED", within="30d")  # the corrected data was submitted


async def test_rejection_that_cannot_be_resolved_cancels_the_sale_with_a_full_refund(world):
    stack, api = world
    sale_id = await registered(stack, api, "ES", tax_id=MAGIC["ES"][1])
    assert (await api.sale(sale_id))["registration"]["status"] == "REJECTED"
    status, problem = await api.call("POST", f"/sales/{sale_id}/cancellation", "k-c1", {"reason": "customer"})
    assert status == 403, problem  # the staff decide, not the customer
    status, sale = await api.call("POST", f"/sales/{sale_id}/cancellation", "k-mad",
                                  {"reason": "the owner's traffic fines cannot be cleared"})
    assert status == 200 and sale["status"] == "CANCELLED", sale
    file = await api.file(sale_id)
    assert sum(r["amount"]["value"] for r in file["refunds"]) == 3_850_000
    assert "SALE_CANCELLED_REFUNDED" in await api.templates()


@pytest.mark.parametrize("country", ["FR", "DE"])
async def test_registry_unavailable_falls_back_to_manual_submission(world, country):
    stack, api = world
    sale_id = await registered(stack, api, country, tax_id=MAGIC[country][2])
    for _ in range(12):
        sale = await api.sale(sale_id)
        if sale["registration"]["status"] == "MANUAL_SUBMISSION":
            break
        await stack.advance("1h")
    manual = sale["registration"]["manualSubmission"]
    assert sale["registration"]["attempts"] == 4 and manual["channel"] and len(manual["documents"]) == 2, sale
    assert "REGISTRATION_MANUAL_SUBMISSION_REQUIRED" in await dealership_templates(api)
    assert "REGISTRATION_DELAYED_MANUAL_PROCESS" in await api.templates()
    status, sale = await api.call("POST", f"/sales/{sale_id}/registration/manual-completion", "k-mad",
                                  {"plateNumber": "AB-123-CD", "registrationDate": "2026-02-20"})
    assert status == 200 and sale["status"] == "READY_FOR_DELIVERY", sale
    await until(stack, api, sale_id, "DELIVERED", within="10d")


# --- delivery ---------------------------------------------------------------------------

async def test_customer_absent_the_vehicle_returns_and_is_collected_at_the_dealership(world):
    stack, api = world
    sale_id = await registered(stack, api, "ES", last_name="Absent")
    await until(stack, api, sale_id, "AWAITING_COLLECTION", within="30d")
    assert "VEHICLE_RETURNED_PICKUP_REQUIRED" in await api.templates()
    status, sale = await api.call("POST", f"/sales/{sale_id}/handover", "k-mad")
    assert status == 200 and sale["status"] == "DELIVERED", sale
    assert (await api.templates())[-1] == "DELIVERED_MOBILE_APP_LINKING"


async def test_sales_are_private_to_their_customer_and_dealership(world):
    _stack, api = world
    sale_id = await api.sell()
    assert (await api.call("GET", f"/sales/{sale_id}", "k-c2"))[0] == 403
    assert (await api.call("GET", f"/sales/{sale_id}", "k-reject"))[0] == 403
    assert (await api.call("GET", f"/sales/{sale_id}", "k-mad"))[0] == 200
    assert (await api.call("GET", f"/sales/{sale_id}/file", "k-ops"))[0] == 200
    assert (await api.call("POST", "/sales", "k-c1", plan()))[0] == 403
    assert (await api.call("GET", "/dealerships/ES-MAD-001/notifications", "k-reject"))[0] == 403
    status, problem = await api.call("POST", "/sales", "k-mad", plan(model="NOPE"))
    assert status == 400, problem  # not a factory model: the contract's enum
    status, problem = await api.call("POST", "/sales", "k-mad", plan(options=["WHEELS-18", "WHEELS-18"]))
    assert status == 400, problem  # uniqueItems
    bad = plan()
    bad["reservation"]["value"] = bad["price"]["value"]
    status, problem = await api.call("POST", "/sales", "k-mad", bad)
    assert status == 422 and "less than the price" in problem["detail"], problem


# --- concurrent payments of one sale -----------------------------------------------------

async def _race(api, pay, sale_id, n=12):
    import asyncio

    return sorted(status for status, _ in await asyncio.gather(*(pay(sale_id) for _ in range(n))))


async def test_concurrent_reservation_and_final_payments_charge_once_and_answer_409(any_db_world):
    stack, api = any_db_world
    sale_id = await api.sell()
    statuses = await _race(api, api.reserve, sale_id)
    assert statuses.count(200) == 1 and set(statuses) == {200, 409}, statuses
    await until(stack, api, sale_id, "AWAITING_FINAL_PAYMENT")
    statuses = await _race(api, api.pay_final, sale_id)
    assert statuses.count(200) == 1 and set(statuses) == {200, 409}, statuses
    assert [p["kind"] for p in (await api.file(sale_id))["payments"]] == ["RESERVATION", "FINAL"]


# --- a process that dies between a sale's charge and its record --------------------------

def _gateway_charges(stack, sale_id, kind):
    from caas_sim.simulators.payments.api import MODEL_KEY

    return [p for p in stack.running["payments"].app[MODEL_KEY].payments.values()
            if p.order_id == sale_id and p.type == kind and p.status != "DECLINED"]


async def test_a_reservation_charged_but_not_recorded_is_found_at_the_gateway_and_the_order_placed(world):
    from caas_core.api.app import CORE_KEY

    stack, api = world
    core = stack.running["core"].app[CORE_KEY]
    sale_id = await api.sell()
    real, core.payments = core.payments, DiesAfterTheCharge(core.payments)
    async with api.http.post(f"/sales/{sale_id}/reservation", headers=as_("k-c1"),
                             json={"paymentMethod": CARD}) as r:
        assert r.status == 500
    core.payments = real
    status, problem = await api.reserve(sale_id, token="pm_card_mastercard")  # another card, at once
    assert status == 409 and problem["type"].endswith("/idempotency-in-flight")
    await stack.advance("5m")  # the lease lapses: the recovery asks the gateway for the sale's reservation
    sale = await api.sale(sale_id)
    assert sale["status"] in ("ORDER_PLACED", "ORDER_QUEUED") and len(_gateway_charges(stack, sale_id, "RESERVATION")) == 1
    assert [p["kind"] for p in (await api.file(sale_id))["payments"]] == ["RESERVATION"]


async def test_a_final_payment_retried_after_a_lost_record_is_recorded_once_whatever_the_card(world):
    from sqlalchemy import update

    from caas_core.api.app import CORE_KEY
    from caas_core.store.schema import sales

    stack, api = world
    core = stack.running["core"].app[CORE_KEY]
    sale_id = await to_final_payment(stack, api)
    real, core.payments = core.payments, DiesAfterTheCharge(core.payments)
    async with api.http.post(f"/sales/{sale_id}/final-payment", headers=as_("k-c1"),
                             json={"paymentMethod": CARD}) as r:
        assert r.status == 500
    core.payments = real
    async with core.db.transaction() as conn:  # the lease lapsed before the recovery job's turn
        await conn.execute(update(sales).where(sales.c.id == sale_id).values(
            payment_intent={"kind": "FINAL", "leaseUntil": core.clock.now() - 1}))
    status, sale = await api.pay_final(sale_id, token="pm_card_mastercard")
    assert status == 200 and sale["status"] == "REGISTRATION", sale
    assert len(_gateway_charges(stack, sale_id, "FINAL")) == 1  # the first card's charge, found; no second


async def test_a_declined_final_payment_whose_answer_was_lost_still_returns_the_vehicle_to_stock(world):
    from sqlalchemy import update

    from caas_core.api.app import CORE_KEY
    from caas_core.store.schema import sales

    stack, api = world
    core = stack.running["core"].app[CORE_KEY]
    sale_id = await to_final_payment(stack, api)
    real, core.payments = core.payments, DiesAfterTheCharge(core.payments)
    async with api.http.post(f"/sales/{sale_id}/final-payment", headers=as_("k-c1"),
                             json={"paymentMethod": {"type": "CARD", "token": "pm_card_insufficient_funds"}}) as r:
        assert r.status == 500
    core.payments = real
    async with core.db.transaction() as conn:
        await conn.execute(update(sales).where(sales.c.id == sale_id).values(
            payment_intent={"kind": "FINAL", "leaseUntil": core.clock.now() - 1}))
    status, problem = await api.pay_final(sale_id, token="pm_card_visa")  # a better card, too late
    assert status == 422 and problem["saleStatus"] == "RETURNED_TO_STOCK", problem
    assert _gateway_charges(stack, sale_id, "FINAL") == []  # the second card was never charged


async def test_orders_failing_together_start_one_outage(any_db_world):
    """Reservations paid at once while the factory is down: each order's failure reads that no
    outage is recorded yet, and only one of them may record it (on PostgreSQL the others'
    inserts collided with it: a 500 for their customers)."""
    stack, api = any_db_world
    sales = [await api.sell() for _ in range(4)]
    stack.service("factory").faults.add({"id": "down", "action": {"type": "factory_unavailable"}})
    answers = await asyncio.gather(*(api.reserve(sale_id) for sale_id in sales))
    assert [(status, sale["status"]) for status, sale in answers] == [(200, "ORDER_QUEUED")] * 4, answers
    await stack.advance("5h")  # past the 4 h the specification accepts: suspended once
    assert (await dealership_templates(api)).count("SALES_SUSPENDED") == 1

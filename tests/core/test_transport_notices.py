"""What the customer is told along the vehicle's way (specification, Transport Coordination:
"Vehicle shipped from factory: Customer, Expected arrival date at dealership"; "Vehicle
arrived at dealership: Customer, Vehicle available, request final payment"): the notices
carry that content, not only their names."""

from caas_core.clock import parse_instant
from tests.core import test_sale_journey as journey
from tests.core.test_sale_journey import to_final_payment

world = journey.world  # database_url: tests/core/conftest.py


async def notices(api, template, customer="c-1", key="k-c1"):
    _status, body = await api.call("GET", f"/customers/{customer}/notifications", key)
    return [n for n in body["notifications"] if n["template"] == template and n["channel"] == "email"]


async def test_shipped_tells_the_expected_arrival_and_arrived_asks_for_the_rest_of_the_price(world):
    stack, api = world
    sale_id = await to_final_payment(stack, api)
    [shipped] = await notices(api, "VEHICLE_SHIPPED")
    expected = shipped["payload"]["expectedArrival"]
    assert expected and parse_instant(expected) >= parse_instant(shipped["createdAt"]), shipped
    [arrived] = await notices(api, "VEHICLE_AVAILABLE_FINAL_PAYMENT_REQUESTED")
    assert arrived["payload"]["saleId"] == sale_id
    # the price less the reservation signal already paid (journey.plan: 38,500.00 and 1,500.00)
    assert arrived["payload"]["finalPayment"] == {"value": 3_850_000 - 150_000, "currency": "EUR"}, arrived

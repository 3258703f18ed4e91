"""Load-test bodies come from the contracts and are checked against them."""

import random
import re

import pytest

from caas_sim.loadtests.bodies import (
    BodyFactory,
    ContractDrift,
    request_schema,
    sample_regex,
)

PURCHASE = "/customers/{customerId}/vehicles/{vin}/purchases"


@pytest.mark.parametrize(("contract", "webhook"), [("iot", "otaStatus"), ("payments", "paymentSettlement"),
                                                    ("payments", "refundStatus"), ("factory", "orderStatus"),
                                                    ("factory", "deliveryStatus")])
def test_every_webhook_body_is_valid(contract, webhook):
    factory = BodyFactory(7)
    for _ in range(20):
        assert isinstance(factory.webhook(contract, webhook), dict)  # validated inside


def test_purchase_body_follows_the_contract():
    body = BodyFactory(1).request("core", "post", PURCHASE, serviceId="heated-seats")
    assert body["serviceId"] == "heated-seats"
    assert set(body) <= set(request_schema("core", "post", PURCHASE)["properties"])


def test_an_overlay_the_contract_refuses_stops_the_test():
    with pytest.raises(ContractDrift, match="durationType"):
        BodyFactory(1).request("core", "post", PURCHASE, durationType="FOREVER")
    with pytest.raises(ContractDrift):
        BodyFactory(1).webhook("iot", "otaStatus", status="MAYBE")


def test_same_seed_same_bodies():
    assert BodyFactory(3).webhook("factory", "orderStatus")["orderId"] == \
        BodyFactory(3).webhook("factory", "orderStatus")["orderId"]


@pytest.mark.parametrize("pattern", [r"^pm_[A-Za-z0-9_]{1,61}$", r"^[A-HJ-NPR-Z0-9]{17}$", r"^ord_[0-9a-f]{20}$",
                                     r"^(ES|FR)-[A-Z]{3}-\d{3}$"])
def test_regex_sampler(pattern):
    rng = random.Random(0)
    for _ in range(50):
        assert re.search(pattern, sample_regex(pattern, rng))

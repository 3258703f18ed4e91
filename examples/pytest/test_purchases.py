"""A team's journeys against the simulators: buy a service, see it delivered, under faults.

Run from the repository's root: ``pytest -p caas_sim.scenarios.pytest_plugin examples/pytest``
(installed caas-sim loads the plugin by itself: ``pytest examples/pytest``)."""

CARD = {"type": "CARD", "token": "pm_card_visa"}


def buy(api, vin, service="heated-seats"):
    return api.post(f"/customers/c-1/vehicles/{vin}/purchases",
                    {"serviceId": service, "durationType": "PERMANENT", "paymentMethod": CARD})


def test_a_purchase_is_active_once_the_vehicle_confirms(caas_world, api, vins):
    bought = buy(api, vins["healthy"])
    assert bought.status == 201, bought.body
    assert bought.body["status"] == "ACTIVATION_QUEUED"

    caas_world.advance("1m")  # the OTA command runs, the vehicle answers, the webhook lands

    purchase = api.get(f"/purchases/{bought.body['purchaseId']}").body
    assert purchase["status"] == "ACTIVE" and purchase["attempts"] == 1


def test_an_offline_vehicle_is_retried_until_it_answers(caas_world, api, vins):
    vin = vins["healthy"]
    rule = caas_world.fault("iot", {"match": {"selectors": {"vin": vin}}, "action": {"type": "vehicle_offline"},
                                    "times": 1})  # offline for the first attempt only
    bought = buy(api, vin)

    caas_world.advance("15m")  # the first attempt fails, the core backs off and tries again

    purchase = api.get(f"/purchases/{bought.body['purchaseId']}").body
    assert purchase["status"] == "ACTIVE" and purchase["attempts"] == 2
    [applied] = [e for e in caas_world.journal("iot") if e.kind == "fault"]
    assert applied.rule_id == rule.id
    assert caas_world.faults("iot")[0].hits == 1


def test_the_journal_shows_what_the_core_asked_and_was_told(caas_world, api, vins):
    bought = buy(api, vins["healthy"])
    caas_world.advance("1m")

    iot = caas_world.journal("iot")
    activations = [e for e in iot if e.kind == "request" and e.operation == "activateService"]
    assert [e.entities.get("vin") for e in activations] == [vins["healthy"]]
    callbacks = [e for e in iot if e.kind == "webhook" and e.status is not None]
    assert callbacks and all(e.status < 300 for e in callbacks)  # the core acknowledged the OTA status
    charges = [e for e in caas_world.journal("payments") if e.operation == "initiatePayment"]
    assert len(charges) == 1
    assert caas_world.violations() == []  # the core broke no simulator's contract
    assert api.get(f"/purchases/{bought.body['purchaseId']}").body["status"] == "ACTIVE"


def test_every_test_starts_from_a_fresh_world(caas_world, api):
    assert api.get("/customers/c-1/purchases").body["purchases"] == []
    assert caas_world.faults("iot") == []
    assert caas_world.journal("iot") == []
    assert caas_world.audit().ok

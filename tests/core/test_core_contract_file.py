"""contracts/core.yaml, the contract of the reference core, as a file.

It loads with schemathesis and with the kit's ``Contract`` (every $ref local and
resolvable), follows the house style of the other contracts, matches the domain's
purchase states, keeps its copy of the admin protocol's schemas identical to
contracts/admin.yaml, and every example in it is valid.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest
import schemathesis
import yaml

from caas_core.domain.purchase import PurchaseState
from caas_sim.simulators.kit.contract import CONTRACTS_DIR, Contract

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.core.test_core_contract_file")

NAME = "core.yaml"
METHODS = ("get", "put", "post", "delete", "patch")
OPERATIONS = {
    "listServices", "purchaseService", "getPurchase", "listPurchases", "withdrawPurchase", "recordManualPayment",
    "listNotifications", "listTickets",
    "receiveOtaStatus", "receivePaymentEvent", "receiveFactoryEvent", "receiveRegistryEvent",
    "getMetrics", "getHealth", "getClock", "moveClock", "reset", "getAudit", "listInvoices",
    "registerSale", "getSale", "getSaleFile", "payReservation", "payFinal", "provideRegistrationInfo",
    "resubmitRegistration", "completeRegistrationManually", "cancelSale", "handOverVehicle",
    "listDealershipNotifications",
}
WEBHOOK_HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature"}
#: Receiver operation -> the sender's contract and the webhooks it may send there.
SENDERS = {
    "receiveOtaStatus": ("iot.yaml", ("otaStatus",)),
    "receivePaymentEvent": ("payments.yaml", ("paymentSettlement", "refundStatus", "paymentChargeback")),
    "receiveFactoryEvent": ("factory.yaml", ("orderStatus", "deliveryStatus")),
    "receiveRegistryEvent": ("registry-uk.yaml", ("registrationStatus",)),
}
#: Object schemas that are open on purpose.
OPEN_SCHEMAS = {"Problem", "WebhookPayload"}


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(NAME)


@pytest.fixture(scope="module")
def doc(contract) -> dict:
    return contract.doc


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def is_webhook_receiver(path: str) -> bool:
    return path.startswith("/caas/webhooks/")


def is_admin(path: str) -> bool:
    return path.startswith("/__admin/") or path == "/metrics"  # the metrics are guarded as the admin routes


def test_loads_with_schemathesis():
    schema = schemathesis.openapi.from_path(CONTRACTS_DIR / NAME)
    assert len(list(schema.get_all_operations())) == len(OPERATIONS)


def test_loads_with_the_kit_and_every_ref_resolves(contract, doc):
    assert set(contract.operations) == OPERATIONS
    contract._deref(doc)  # raises on a non-local or dangling $ref anywhere in the document


def test_is_a_valid_openapi_3_1_document(doc):
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    assert doc["openapi"].startswith("3.1")
    errors = [f"{list(e.instance_path)}: {e.message}" for e in OPENAPI_31_VALIDATOR.iter_errors(doc)]
    assert errors == []


def test_security_and_401(contract, doc):
    assert doc["security"] == [{"bearerAuth": []}]
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for path, method, op in operations(doc):
        where = f"{method.upper()} {path}"
        assert "401" in op["responses"], f"{where} does not list 401"
        security = op.get("security", doc["security"])
        if is_webhook_receiver(path) or is_admin(path):
            assert op.get("security") == [], f"{where} must declare security: []"
        else:
            assert security and all("bearerAuth" in req for req in security), f"{where} has no security requirement"
        if is_webhook_receiver(path):
            headers = {contract._resolve(p)["name"]: contract._resolve(p) for p in op.get("parameters", [])}
            assert WEBHOOK_HEADERS <= set(headers), f"{where} lacks Standard Webhooks headers"
            assert all(headers[h]["in"] == "header" and headers[h]["required"] for h in WEBHOOK_HEADERS)
            assert set(op["responses"]) == {"204", "400", "401", "503"}  # 503: backlog full (flows.backlog)


def test_house_style_of_responses(contract, doc):
    for path, method, op in operations(doc):
        where = f"{method.upper()} {path}"
        assert "default" not in op["responses"], f"{where} has a default response"
        assert op.get("operationId") in OPERATIONS
        for status, raw in op["responses"].items():
            response = contract._resolve(raw)
            if int(status) >= 400:
                content = response.get("content", {})
                assert list(content) == ["application/problem+json"], f"{where} {status} is not problem+json"
                assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
            if status in ("429", "503"):
                assert "Retry-After" in response.get("headers", {}), f"{where} {status} lacks Retry-After"
        if not is_admin(path):
            names = {contract._resolve(p)["name"] for p in op.get("parameters", [])}
            assert "X-Correlation-Id" in names, f"{where} does not take X-Correlation-Id"


def test_idempotency_key_has_no_example(contract, doc):
    # A fixed example would make schemathesis send one key with many bodies (422 everywhere).
    param = doc["components"]["parameters"]["IdempotencyKey"]
    assert "example" not in param and "examples" not in param and "examples" not in param["schema"]
    for op_id in ("purchaseService", "withdrawPurchase"):
        assert contract.operations[op_id].idempotent


def test_object_schemas_are_closed(doc):
    def walk(node: Any, where: str):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, f"{where} is not closed"
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    for name, schema in doc["components"]["schemas"].items():
        if name not in OPEN_SCHEMAS:
            walk(schema, name)


def test_sale_status_enum_is_the_domain_one(doc):
    from caas_core.domain.sale import SaleStatus

    assert doc["components"]["schemas"]["SaleStatus"]["enum"] == [s.value for s in SaleStatus]


def test_the_countries_of_a_sale_are_those_the_core_registers_in(doc):
    """A country the core registers in (``domain/registration.py``) has its registry in the
    catalogue, is accepted by the core's API, and is one the factory delivers to; a country
    added to one and not the others is refused at the first sale (a 400 naming the field)."""
    from caas_core.domain.registration import COUNTRIES
    from caas_sim import catalogue

    assert set(COUNTRIES) <= set(catalogue.REGISTRY_COUNTRIES), "a country without a registry row in the catalogue"
    assert set(doc["components"]["schemas"]["Country"]["enum"]) == set(COUNTRIES), "core.yaml Country"
    factory = yaml.safe_load((CONTRACTS_DIR / catalogue.entry("factory").contract).read_text())
    assert set(COUNTRIES) <= set(factory["components"]["schemas"]["Country"]["enum"]), "factory.yaml Country"


def test_purchase_status_enum_is_the_domain_state_machine(contract, doc):
    purchase = contract._deref(doc["components"]["schemas"]["Purchase"])
    assert purchase["properties"]["status"]["enum"] == [s.value for s in PurchaseState]
    assert set(purchase["required"]) == set(purchase["properties"])


def test_purchase_request_is_tight(contract, doc):
    request = contract._deref(doc["components"]["schemas"]["PurchaseRequest"])
    validator = jsonschema_rs.Draft202012Validator(request, validate_formats=True)
    good = {"serviceId": "heated-seats", "durationType": "PERMANENT",
            "paymentMethod": {"type": "CARD", "token": "pm_card_visa"}}
    assert validator.is_valid(good)
    for bad in (
        {**good, "extra": 1},
        {**good, "serviceId": "Heated-Seats"},
        {**good, "durationType": "FOREVER"},
        {**good, "paymentMethod": {"type": "CARD", "token": "tok_visa"}},
        {**good, "paymentMethod": {"type": "CASH", "token": "pm_card_visa"}},
        {k: v for k, v in good.items() if k != "paymentMethod"},
    ):
        assert not validator.is_valid(bad), bad


def test_links_name_real_operations_and_parameters(contract, doc):
    by_id = {op["operationId"]: (path, op) for path, _, op in operations(doc)}
    found = 0
    for path, method, op in operations(doc):
        for status, raw in op["responses"].items():
            for name, link in contract._resolve(raw).get("links", {}).items():
                found += 1
                target_path, target = by_id[link["operationId"]]
                shared = doc["paths"][target_path].get("parameters", [])
                names = {contract._resolve(p)["name"] for p in [*shared, *target.get("parameters", [])]}
                assert set(link["parameters"]) <= names, f"{method.upper()} {path} {status} link {name}"
    links = contract._resolve(doc["paths"]["/customers/{customerId}/vehicles/{vin}/purchases"]["post"]
                              ["responses"]["201"])["links"]
    assert links["GetPurchase"]["parameters"] == {"purchaseId": "$response.body#/purchaseId"}
    assert links["ListPurchases"]["parameters"] == {"customerId": "$request.path.customerId"}
    assert found >= 3


def _validator(contract: Contract, schema: dict):
    return jsonschema_rs.Draft202012Validator(contract._deref(schema), validate_formats=True)


def _examples(contract: Contract, doc: dict):
    """(where, schema, value) of every example in the document."""
    out: list[tuple[str, dict, Any]] = []

    def walk(node: Any, where: str):
        if isinstance(node, dict):
            if "$ref" in node:
                return  # checked where the target is defined
            if isinstance(node.get("examples"), list):  # a schema's own examples
                schema = {k: v for k, v in node.items() if k != "examples"}
                out.extend((f"{where}/examples/{i}", schema, v) for i, v in enumerate(node["examples"]))
            if "schema" in node:  # a parameter, a header or a media type
                if "example" in node:
                    out.append((f"{where}/example", node["schema"], node["example"]))
                if isinstance(node.get("examples"), dict):
                    for name, example in node["examples"].items():
                        out.append((f"{where}/examples/{name}", node["schema"], contract._resolve(example)["value"]))
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(doc, "#")
    return out


def test_every_example_is_valid(contract, doc):
    examples = _examples(contract, doc)
    assert len(examples) >= 40
    failures = []
    for where, schema, value in examples:
        validator = _validator(contract, schema)
        failures.extend(f"{where}: {e.message}" for e in validator.iter_errors(value))
    assert failures == []


def test_every_error_example_has_its_status(contract, doc):
    for path, method, op in operations(doc):
        for status, raw in op["responses"].items():
            media = contract._resolve(raw).get("content", {}).get("application/problem+json")
            if not media:
                continue
            values = [media["example"]] if "example" in media else [
                contract._resolve(e)["value"] for e in media.get("examples", {}).values()]
            assert values, f"{method.upper()} {path} {status} has no example"
            assert all(v["status"] == int(status) for v in values), f"{method.upper()} {path} {status}"


def test_webhook_examples_follow_the_senders_contracts(contract, doc):
    for op_id, (sender, names) in SENDERS.items():
        op = next(op for _, _, op in operations(doc) if op["operationId"] == op_id)
        examples = op["requestBody"]["content"]["application/json"]["examples"]
        assert examples, op_id
        theirs = Contract(sender)
        for name, example in examples.items():
            problems = {w: theirs.check_webhook(w, example["value"]) for w in names}
            assert any(not p for p in problems.values()), f"{op_id} example {name}: {problems}"


def test_admin_routes_match_the_admin_protocol(contract, doc):
    admin = Contract("admin.yaml")
    for op_id in ("getHealth", "getClock", "moveClock", "reset"):
        ours, theirs = contract.operations[op_id], admin.operations[op_id]
        assert (ours.method, ours.path) == (theirs.method, theirs.path)
    admin_doc = yaml.safe_load((CONTRACTS_DIR / "admin.yaml").read_text())
    for name in ("Health", "Clock", "ClockMove", "ResetResult", "DurationString", "Instant"):
        assert contract._deref(doc["components"]["schemas"][name]) == \
            admin._deref(admin_doc["components"]["schemas"][name]), name

"""Every example in every contract is true, and the core answers in the examples' shape.

An example in ``contracts/*.yaml`` is documentation people copy (magic test values,
webhook payloads, what a ticket looks like), so it must validate against its own schema:
``example`` and ``examples`` on schemas, parameters, headers and media types (request
bodies and responses, in ``paths`` and in ``webhooks``), with every ``$ref`` resolved, by
jsonschema-rs under Draft 2020-12 as the kit enforces contracts at runtime. One test case
per example, named ``contract:pointer``.

A valid example can still differ from what the service really answers (every key of an
object schema optional or open). So the core's ticket listing, and the answers that cost
nothing to obtain, are checked against the schema and compared key by key with the example.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jsonschema_rs
import pytest
from standardwebhooks.webhooks import Webhook

from caas_sim import catalogue
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.iot.api import MODEL_KEY as IOT_MODEL
from caas_sim.simulators.kit.contract import CONTRACTS_DIR, Contract

#: Keys whose value maps names (of properties, paths, media types, statuses...) to objects,
#: so that a property called ``example`` or ``schema`` is not taken for the keyword.
NAMED = {"paths", "webhooks", "components", "schemas", "parameters", "requestBodies", "headers", "responses",
         "securitySchemes", "links", "callbacks", "pathItems", "content", "encoding", "properties",
         "patternProperties", "$defs", "dependentSchemas"}
#: Keys whose value is data, not part of the document: never walked into.
DATA = {"example", "examples", "default", "enum", "const", "value"}


def _escape(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def examples_of(contract: Contract) -> list[tuple[str, Any, Any]]:
    """(pointer, schema, value) of every example in the contract."""
    found: list[tuple[str, Any, Any]] = []

    def obj(node: Any, where: str) -> None:  # an object whose keys are keywords
        if isinstance(node, list):
            for i, item in enumerate(node):
                obj(item, f"{where}/{i}")
            return
        if not isinstance(node, dict):
            return
        if "schema" in node:  # a parameter, a header or a media type
            schema = node["schema"]
            if "example" in node:
                found.append((f"{where}/example", schema, node["example"]))
            for name, example in (node.get("examples") or {}).items():
                found.append((f"{where}/examples/{_escape(name)}", schema, contract._resolve(example)["value"]))
        else:  # a schema (only schemas carry a bare example, or a list of examples)
            schema = {k: v for k, v in node.items() if k not in ("example", "examples")}
            if "example" in node:
                found.append((f"{where}/example", schema, node["example"]))
            if isinstance(node.get("examples"), list):
                found.extend((f"{where}/examples/{i}", schema, v) for i, v in enumerate(node["examples"]))
        for key, value in node.items():
            if key in NAMED and isinstance(value, dict):
                for name, item in value.items():
                    obj(item, f"{where}/{_escape(key)}/{_escape(name)}")
            elif key not in DATA:
                obj(value, f"{where}/{_escape(key)}")

    obj(contract.doc, "#")
    return found


CONTRACTS = {path.name: Contract(path) for path in sorted(CONTRACTS_DIR.glob("*.yaml"))}
EXAMPLES = [(name, *example) for name, contract in CONTRACTS.items() for example in examples_of(contract)]


@pytest.mark.parametrize(("name", "pointer", "schema", "value"), EXAMPLES,
                         ids=[f"{name}:{pointer}" for name, pointer, _, _ in EXAMPLES])
def test_example_is_valid(name, pointer, schema, value):
    validator = jsonschema_rs.Draft202012Validator(CONTRACTS[name]._deref(schema), validate_formats=True)
    errors = [f"/{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(value)]
    assert errors == [], f"{name}:{pointer}"


def test_every_contract_has_examples_and_the_walk_finds_them_everywhere():
    pointers = {f"{name}:{pointer}" for name, pointer, _, _ in EXAMPLES}
    assert {name for name, *_ in EXAMPLES} == set(CONTRACTS)
    for expected in (  # one of each kind: media type, schema list, parameter, webhook
        "core.yaml:#/paths/~1support~1tickets/get/responses/200/content/application~1json/example",
        "core.yaml:#/components/schemas/Instant/examples/0",
        "iot.yaml:#/webhooks/otaStatus/post/requestBody/content/application~1json/examples/activated",
    ):
        assert expected in pointers


# --- the core's real answers, in the examples' shape ----------------------------------

CORE = CONTRACTS["core.yaml"]
KEYS = {"k-c1": {"role": "customer", "subject": "c-1"}, "k-ops": {"role": "operator", "subject": "ops"}}
CARD = {"type": "CARD", "token": "pm_card_visa"}


def documented(operation_id: str, status: str, name: str | None = None) -> tuple[Any, Any]:
    """The response schema's validator and the example (``name`` among ``examples``) of an operation."""
    op = next(op for item in CORE.doc["paths"].values() for op in item.values()
              if isinstance(op, dict) and op.get("operationId") == operation_id)
    media = CORE._resolve(op["responses"][status])["content"]["application/json"]
    example = media["example"] if name is None else CORE._resolve(media["examples"][name])["value"]
    return CORE.operations[operation_id].responses[status], example


#: Objects keyed by data, not by field (a service's prices by duration type, a notice's
#: template fields): their keys rightly differ from one answer to the next.
MAPS = {"prices", "payload"}


def shape_differences(example: Any, answer: Any, where: str = "") -> list[str]:
    """Where an object of the answer has other keys than the example's object at the same
    place (the items of a list against the example's first item)."""
    if isinstance(example, dict) and isinstance(answer, dict):
        same = set(example) == set(answer) or where.rsplit("/", 1)[-1] in MAPS
        out = [] if same else [f"{where or '/'}: answer {sorted(answer)} but example {sorted(example)}"]
        return out + [d for k in set(example) & set(answer) for d in shape_differences(example[k], answer[k],
                                                                                       f"{where}/{k}")]
    if isinstance(example, list) and isinstance(answer, list) and example:
        return [d for i, item in enumerate(answer) for d in shape_differences(example[0], item, f"{where}/{i}")]
    return []


def conforms(operation_id: str, status: int, answer: Any, name: str | None = None, *, shape=True) -> list[str]:
    validator, example = documented(operation_id, str(status), name)
    errors = [f"{operation_id}: /{'/'.join(map(str, e.instance_path))}: {e.message}"
              for e in validator.iter_errors(answer)]
    return errors + ([f"{operation_id}: {d}" for d in shape_differences(example, answer)] if shape else [])


@pytest.fixture
async def world(tmp_path):
    stack = Stack(services=["iot", "vss", "payments"], seed=0,
                  core={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", "api_keys": KEYS})
    async with stack, aiohttp.ClientSession(stack.url("core")) as http:
        yield stack, http, stack.running["iot"].app[IOT_MODEL].fleet.magic_vins()
        assert stack.violations() == []


async def call(http, method: str, path: str, key: str = "k-ops", **kw) -> tuple[int, Any]:
    async with http.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kw) as r:
        return r.status, await r.json()


async def test_the_ticket_of_a_failed_activation_is_in_the_contracts_shape(world):
    stack, http, vins = world
    status, bought = await call(http, "POST", f"/customers/c-1/vehicles/{vins['always_offline']}/purchases", "k-c1",
                                json={"serviceId": "heated-seats", "durationType": "PERMANENT", "paymentMethod": CARD})
    assert status == 201, bought
    await stack.advance("2h")  # every attempt fails: ticket, refund
    status, answer = await call(http, "GET", "/support/tickets")
    assert status == 200 and len(answer["tickets"]) == 1
    assert conforms("listTickets", 200, answer, shape=False) == []
    [ticket], [example, *_] = answer["tickets"], documented("listTickets", "200")[1]["tickets"]
    assert set(ticket) == set(example) and set(ticket["diagnostics"]) == set(example["diagnostics"])
    assert ticket["purchaseId"] == bought["purchaseId"] and ticket["diagnostics"]["connectivity"] == "OFFLINE"


async def test_the_cores_answers_are_in_the_shape_of_their_examples(world):
    """The answers a short journey gives: a purchase, an activation, a failed one, a month's
    invoice."""
    stack, http, vins = world
    buy = {"serviceId": "heated-seats", "paymentMethod": CARD}
    wrong: list[str] = []
    status, sub = await call(http, "POST", f"/customers/c-1/vehicles/{vins['healthy']}/purchases", "k-c1",
                             json={**buy, "durationType": "SUBSCRIPTION"})
    wrong += conforms("purchaseService", status, sub, "subscription")
    status, failing = await call(http, "POST", f"/customers/c-1/vehicles/{vins['always_offline']}/purchases",
                                 "k-c1", json={**buy, "durationType": "PERMANENT"})
    wrong += conforms("purchaseService", status, failing, "queued")
    await stack.advance("2h")
    for operation_id, path, name in (
        ("listServices", "/catalogue/services", None),
        ("getPurchase", f"/purchases/{sub['purchaseId']}", "active"),
        ("listPurchases", "/customers/c-1/purchases", None),
        ("listNotifications", "/customers/c-1/notifications", None),
        ("listTickets", "/support/tickets", None),
        ("getHealth", "/__admin/health", None),
        ("getClock", "/__admin/clock", None),
    ):
        status, answer = await call(http, "GET", path)
        wrong += conforms(operation_id, status, answer, name)
    await stack.advance("58d")  # past 1 March: two month-end invoices, the failed purchase refunded
    status, answer = await call(http, "GET", f"/purchases/{sub['purchaseId']}/invoices")
    wrong += conforms("listInvoices", status, answer)
    status, answer = await call(http, "GET", f"/purchases/{failing['purchaseId']}")
    wrong += conforms("getPurchase", status, answer, "refunded")
    assert wrong == [], "\n".join(wrong)


# --- every example request, sent to its service in a fresh world ----------------------
#
# An example request is one request body example of an operation (each named one, or the
# single ``example``), or, for an operation without a body, the request its parameters'
# examples make. Its path, query and header parameters are their examples: the first one,
# except for a header with named examples, whose example of the body example's name goes
# with it (one ``Idempotency-Key`` per distinct body). A contract's example requests are
# sent in the document's order (deletions last) to a fresh world of seed 0 (the service
# alone; the core with the simulators it calls), so that an id in an example is the one
# the world gives the resource an earlier example created (ids are drawn from the seed).
#
# The answer the contract documents: the status of the response example of the same name
# when there is one (a refusal the contract shows, such as a declined card), otherwise a
# success (2xx), except where ``IN_ANOTHER_STATE`` says what a fresh world answers to an
# example that needs a state no example request reaches. The answer must be a documented
# status of the operation and conform to its schema.

#: (contract, operationId) -> how far the world's clock moves before the operation's
#: first example request: examples written for a later moment of the same story.
LATER: dict[tuple[str, str], str] = {
    ("factory.yaml", "scheduleDelivery"): "30d",  # the Zephyr EV of the `zephyr` order is at the dealership
    ("iot.yaml", "deactivateService"): "1m",  # the heated seats of the `permanent` activation are on
    # the `additionalInfo` registration has been reviewed: information is asked for
    ("registry-de.yaml", "provideAdditionalInfo"): "5d",
    ("registry-uk.yaml", "provideAdditionalInfo"): "14d",
    ("core.yaml", "payFinal"): "30d",  # the sale's Zephyr EV is built and at the dealership
}
#: (contract, operationId) -> (status, why): examples written for a state that the
#: example requests do not reach (another branch of the journey): the documented refusal.
IN_ANOTHER_STATE: dict[tuple[str, str], tuple[int, str]] = {
    # The example sale is registered at once in Spain (approved, then delivered); these
    # examples are for sales whose journey went another way.
    ("core.yaml", "provideRegistrationInfo"): (409, "a registration the authority asks information for"),
    ("core.yaml", "resubmitRegistration"): (409, "a registration rejected or refused for invalid data"),
    ("core.yaml", "completeRegistrationManually"): (409, "a registration left to manual submission"),
    ("core.yaml", "cancelSale"): (409, "an order that cannot be placed, or a registration that cannot be resolved"),
    ("core.yaml", "handOverVehicle"): (409, "a home delivery the customer missed"),
    ("core.yaml", "recordManualPayment"): (409, "a purchase the payment gateway was down too long to charge"),
}
#: The service each contract's examples are sent to (the admin protocol's describe the IoT simulator's faults).
SERVED_BY = {contract: e.name for e in catalogue.SERVICES for contract in e.contracts} | {
    catalogue.ADMIN_CONTRACT: "iot", catalogue.CORE_CONTRACT: "core"}
#: API keys of the core's replay, by role: a customer is the examples' customer.
REPLAY_KEYS = {"k-customer": {"role": "customer", "subject": "cust-1042"},
               "k-dealership": {"role": "dealership", "subject": "ES-MAD-001"},
               "k-operator": {"role": "operator", "subject": "ops"}}
METHODS = ("get", "put", "post", "delete", "patch")


@dataclass
class ExampleRequest:
    operation: str
    method: str
    path: str
    name: str | None  # the request body example's name, None for a single ``example`` or none
    body: Any = None
    has_body: bool = False
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    spec: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.operation} {self.method} {self.path}" + (f" [{self.name}]" if self.name else "")


def _parameter_value(contract: Contract, param: dict, name: str | None) -> tuple[bool, Any]:
    if "example" in param:
        return True, param["example"]
    named = {key: contract._resolve(value)["value"] for key, value in (param.get("examples") or {}).items()}
    if named:
        return True, named.get(name, next(iter(named.values()))) if param["in"] == "header" else \
            next(iter(named.values()))
    schema = contract._deref(param.get("schema", {}))
    if "example" in schema:
        return True, schema["example"]
    if schema.get("examples"):
        return True, schema["examples"][0]
    return False, None


def _bodies(contract: Contract, operation: dict) -> list[tuple[str | None, Any]]:
    """(name, value) of every request body example; [] for an operation without a JSON body."""
    media = (contract._resolve(operation.get("requestBody") or {}).get("content") or {}).get("application/json")
    if media is None:
        return []
    if media.get("examples"):
        return [(name, contract._resolve(example)["value"]) for name, example in media["examples"].items()]
    if "example" in media:
        return [(None, media["example"])]
    schema = contract._deref(media.get("schema", {}))
    return [(None, schema["example"])] if "example" in schema else []


def example_requests(contract: Contract) -> list[ExampleRequest]:
    found = []
    for template, item in contract.doc["paths"].items():
        for method in (m for m in item if m in METHODS):  # in the document's order
            operation = item[method]
            params = [contract._resolve(p) for p in [*item.get("parameters", []), *operation.get("parameters", [])]]
            bodies = _bodies(contract, operation)
            if operation.get("requestBody") and contract._resolve(operation["requestBody"]).get("required") \
                    and not bodies:
                continue  # nothing to send: the schema test covers what examples it has
            for name, body in bodies or [(None, None)]:
                request = ExampleRequest(operation["operationId"], method.upper(), template, name, body,
                                         bool(bodies), spec=operation)
                for param in params:
                    present, value = _parameter_value(contract, param, name)
                    assert present or not param.get("required"), f"{request}: no example for {param['name']}"
                    if not present:
                        continue
                    text = json.dumps(value) if isinstance(value, bool) else str(value)
                    if param["in"] == "path":
                        request.path = request.path.replace(f"{{{param['name']}}}", text)
                    elif param["in"] == "query":
                        request.query[param["name"]] = text
                    elif param["in"] == "header":
                        request.headers[param["name"]] = text
                found.append(request)
    # Deletions last, the narrowest first (a rule, then every rule): each deletes what is there.
    return sorted(found, key=lambda r: (r.method == "DELETE", -r.path.count("/") if r.method == "DELETE" else 0))


def documented_answer(contract: Contract, name: str, request: ExampleRequest) -> int | str:
    """The status the contract documents for ``request``: a number, or "2xx"."""
    if (name, request.operation) in IN_ANOTHER_STATE:
        return IN_ANOTHER_STATE[name, request.operation][0]
    if request.name is not None:
        for status, response in request.spec.get("responses", {}).items():
            for media in (contract._resolve(response).get("content") or {}).values():
                if request.name in (media.get("examples") or {}):
                    return int(status)
    return "2xx"


def _core_key(spec: dict) -> str | None:
    access = spec.get("x-caas-access")
    if not isinstance(access, dict):
        return None  # a webhook receiver (signed instead) or an admin route
    return {"customer": "k-customer", "dealership": "k-dealership"}.get(access["roles"][0], "k-operator")


def _signed(stack: Stack, path: str, body: bytes) -> dict[str, str]:
    sender = next(name for name, receiver in catalogue.WEBHOOK_SENDERS.items() if receiver == path)
    webhook_id, now = f"msg_example_{hashlib.sha256(body).hexdigest()[:16]}", datetime.now(UTC)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(stack.webhook_secret(sender)).sign(webhook_id, now, body.decode())}


async def replay(name: str, tmp_path) -> list[str]:
    """Send every example request of contract ``name`` to a fresh world; what went wrong."""
    contract = CONTRACTS[name]
    service = SERVED_BY[name]
    if service == "core":
        stack = Stack(services=["factory", "vss", "iot", "payments", "registry-es", "registry-uk"], seed=0,
                      core={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", "api_keys": REPLAY_KEYS})
    else:
        stack = Stack(services=[service], seed=0)
    wrong = []
    async with stack, aiohttp.ClientSession() as http:
        base = stack.url(service)
        moved = set()
        for request in example_requests(contract):
            if (name, request.operation) in LATER and request.operation not in moved:
                moved.add(request.operation)
                await stack.advance(LATER[name, request.operation])
            body = json.dumps(request.body).encode() if request.has_body else None
            headers = {**request.headers, **({"Content-Type": "application/json"} if body is not None else {})}
            if service == "core":
                key = _core_key(request.spec)
                if key:
                    headers["Authorization"] = f"Bearer {key}"
                elif request.spec.get("x-caas-access") == "webhook":
                    headers |= _signed(stack, request.path, body)
            async with http.request(request.method, base + request.path, params=request.query, data=body,
                                    headers=headers) as response:
                status, raw, media = response.status, await response.read(), response.content_type
            answer = json.loads(raw) if raw and "json" in media else raw.decode(errors="replace")
            expected = documented_answer(contract, name, request)
            if expected == "2xx" and not 200 <= status < 300 or expected != "2xx" and status != expected:
                wrong.append(f"{request}: {status} (documented: {expected}) {raw[:300].decode(errors='replace')}")
            operation = contract.operations[request.operation]
            if str(status) not in operation.responses:
                wrong.append(f"{request}: {status} is not a documented status")
            elif "json" in media and (violations := operation.check_response(status, answer)):
                wrong.append(f"{request}: the answer breaks the contract: {[str(v) for v in violations]}")
        wrong += [f"violation journaled: {v}" for v in stack.violations()]
    return wrong


@pytest.mark.parametrize("name", sorted(CONTRACTS))
async def test_every_example_request_gets_its_documented_answer_in_a_fresh_world(name, tmp_path):
    wrong = await replay(name, tmp_path)
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_an_idempotency_key_in_the_examples_goes_with_one_request(name):
    """The same key with another body is 422: an example key names one request only, and
    an operation's named keys are those of its request body examples."""
    contract, bodies_of = CONTRACTS[name], {}
    for request in example_requests(contract):
        key = next((v for k, v in request.headers.items() if k.lower() == "idempotency-key"), None)
        if key is not None:
            bodies_of.setdefault(key, set()).add((request.operation, request.path, json.dumps(request.body, sort_keys=True)))
        for param in request.spec.get("parameters", []):
            param = contract._resolve(param)
            if param["in"] == "header" and param.get("examples") and request.name is not None:
                assert request.name in param["examples"], f"{request}: no {param['name']} example named {request.name}"
    reused = {key: sorted(op for op, _, _ in requests) for key, requests in bodies_of.items() if len(requests) > 1}
    assert reused == {}

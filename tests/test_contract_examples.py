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

from typing import Any

import aiohttp
import jsonschema_rs
import pytest

from scenarios.stack import Stack
from simulators.iot.api import MODEL_KEY as IOT_MODEL
from simulators.kit.contract import CONTRACTS_DIR, Contract

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

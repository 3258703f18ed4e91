"""The admin protocol's models (simulators/admin_models.py) against contracts/admin.yaml and
the core's audit in contracts/core.yaml, so that neither drifts; and the typed clients
(``AsyncAdmin``, ``Admin``) against running services."""

from __future__ import annotations

import asyncio
import socket
import typing
from datetime import UTC, datetime, timedelta

import aiohttp
import jsonschema_rs
import pytest
import yaml
from pydantic import BaseModel, ValidationError

from caas_sim.catalogue import ADMIN_CONTRACT, CONTRACTS_DIR, CORE_CONTRACT
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators import admin_models as m
from caas_sim.simulators.client import AdminError, AdminUnreachable
from caas_sim.simulators.kit.webhooks import DEFAULT_SECRET
from caas_sim.simulators.typed_client import Admin, AdminProblem, AsyncAdmin

DOCS = {name: yaml.safe_load((CONTRACTS_DIR / name).read_text()) for name in (ADMIN_CONTRACT, CORE_CONTRACT)}
MIRRORED = {pointer: model for model, pointer in m.SCHEMAS.items()}
#: Body schemas of admin.yaml that no single model mirrors, and why.
UNMIRRORED = {
    "admin.yaml#/components/schemas/FaultRulesInput": "one FaultRuleInput, or {rules: [FaultRuleInput]}",
}
START = datetime(2026, 1, 5, 8, tzinfo=UTC)


# --- reading schemas --------------------------------------------------------
def resolve(doc: dict, pointer: str) -> dict:
    node = doc
    for part in pointer.lstrip("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(doc: dict, schema: dict) -> dict:
    """The schema a ``$ref`` names, with the ref's siblings (a description...) kept."""
    while "$ref" in schema:
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**resolve(doc, schema["$ref"]), **siblings}
    return schema


def json_types(doc: dict, schema: dict) -> set[str]:
    """The JSON types a schema admits (``any`` when it does not say)."""
    schema = deref(doc, schema)
    declared = schema.get("type")
    if declared is not None:
        return set(declared if isinstance(declared, list) else [declared])
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        return {_json_type(v) for v in values}
    alternatives = [json_types(doc, sub) for key in ("oneOf", "anyOf") for sub in schema.get(key, [])]
    if alternatives and all("any" not in a for a in alternatives):
        return set().union(*alternatives)
    return {"any"}


def _json_type(value: object) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null",
            list: "array", dict: "object"}[type(value)]


def enum_of(doc: dict, schema: dict) -> set | None:
    schema = deref(doc, schema)
    if "const" in schema:
        return {schema["const"]}
    if "enum" in schema:
        return set(schema["enum"])
    values = [enum_of(doc, sub) for key in ("oneOf", "anyOf") for sub in schema.get(key, [])]
    values = [v for v in values if v is not None]
    return set().union(*values) if values else None


def accepts(model_types: set[str], contract_types: set[str]) -> bool:
    """Whether a field of ``model_types`` takes every value of ``contract_types``."""
    if "any" in model_types:
        return True
    return all(t in model_types or (t == "integer" and "number" in model_types) for t in contract_types)


def models_in(annotation: object) -> set[type]:
    """The pydantic models an annotation mentions (``list[X] | None`` -> {X})."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    found: set[type] = set()
    for arg in typing.get_args(annotation):
        found |= models_in(arg)
    return found


def contract_of(pointer: str) -> tuple[dict, str, str]:
    contract, _, path = pointer.partition("#")
    return DOCS[contract], contract, path


def model_fields_by_alias(model: type[BaseModel]) -> dict[str, str]:
    return {(info.alias or name): name for name, info in model.model_fields.items()}


# --- every model against its schema -----------------------------------------
@pytest.mark.parametrize("model", list(m.SCHEMAS), ids=lambda model: model.__name__)
def test_the_model_has_the_contracts_fields_requirements_and_types(model):
    doc, contract, path = contract_of(m.SCHEMAS[model])
    schema = deref(doc, resolve(doc, path))
    assert json_types(doc, schema) == {"object"}
    properties = schema.get("properties", {})
    ours = model.model_json_schema(by_alias=True, mode="validation")
    mine = ours.get("properties", {})
    assert set(mine) == set(properties), f"{model.__name__}: fields differ from {m.SCHEMAS[model]}"
    assert set(ours.get("required", [])) == set(schema.get("required", [])), f"{model.__name__}: required differ"
    extra = model.model_config.get("extra")
    if schema.get("additionalProperties", True) is not False:
        assert extra == "allow", f"{model.__name__}: the contract allows more fields: keep them"

    by_alias = model_fields_by_alias(model)
    for name, prop in properties.items():
        where = f"{model.__name__}.{by_alias[name]} ({name})"
        wanted, have = json_types(doc, prop), json_types(ours, mine[name])
        assert accepts(have, wanted), f"{where}: the contract allows {wanted}, the model {have}"
        values = enum_of(doc, prop)
        if values is not None:
            assert enum_of(ours, mine[name]) == values, f"{where}: enumeration differs from the contract's"
        # A nested object of the contract is the model that mirrors it, never a loose dict.
        field_models = models_in(model.model_fields[by_alias[name]].annotation)
        prop_pointer = f"{path}/properties/{name}"
        target = deref(doc, prop)
        for candidate in _pointers_of(contract, prop_pointer, prop, target):
            if candidate in MIRRORED:
                assert MIRRORED[candidate] in field_models, f"{where} should be {MIRRORED[candidate].__name__}"
                break
        else:
            nested = target.get("items", target) if "array" in json_types(doc, target) else target
            assert not deref(doc, nested).get("properties"), f"{where}: an object of the contract no model mirrors"


def _pointers_of(contract: str, pointer: str, prop: dict, target: dict) -> list[str]:
    pointers = [f"{contract}#{pointer}"]
    if "$ref" in prop:
        pointers.append(f"{contract}{prop['$ref']}")
    items = target.get("items")
    if isinstance(items, dict):
        pointers.append(f"{contract}#{pointer}/items")
        if "$ref" in items:
            pointers.append(f"{contract}{items['$ref']}")
    return pointers


def test_every_body_of_the_admin_protocol_has_its_model():
    doc = DOCS[ADMIN_CONTRACT]
    bodies = set()
    for path_item in doc["paths"].values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            carriers = [operation.get("requestBody", {})] + [deref(doc, r) for r in operation["responses"].values()]
            for carrier in carriers:
                for media in carrier.get("content", {}).values():
                    ref = media.get("schema", {}).get("$ref")
                    if ref:
                        bodies.add(f"{ADMIN_CONTRACT}{ref}")
    assert bodies, "no body found: the walk is broken"
    missing = {b for b in bodies if b not in MIRRORED and b not in UNMIRRORED}
    assert not missing, f"bodies of admin.yaml without a model in simulators/admin_models.py: {sorted(missing)}"


def _examples(doc: dict):
    """(schema pointer, example value) of every request and response example of a contract."""
    for path_item in doc["paths"].values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for carrier in [operation.get("requestBody", {})] + [deref(doc, r) for r in
                                                                 operation["responses"].values()]:
                for media in carrier.get("content", {}).values():
                    ref = media.get("schema", {}).get("$ref")
                    if not ref:
                        continue
                    if "example" in media:
                        yield ref, media["example"]
                    for example in media.get("examples", {}).values():
                        yield ref, example["value"]


@pytest.mark.parametrize("contract", [ADMIN_CONTRACT, CORE_CONTRACT])
def test_the_contracts_examples_parse_and_dump_back_to_what_the_contract_accepts(contract):
    doc = DOCS[contract]
    checked = 0
    for ref, value in _examples(doc):
        pointer = f"{contract}{ref}"
        if pointer == f"{ADMIN_CONTRACT}#/components/schemas/FaultRulesInput":
            rules = value.get("rules", [value])
            parsed = [m.FaultRuleInput.model_validate(rule) for rule in rules]
            assert [r.to_json() for r in parsed] == rules  # nothing lost, nothing added
            checked += 1
            continue
        model = MIRRORED.get(pointer)
        if model is None:
            continue
        instance = model.model_validate(value)
        conforms(pointer, _dump(instance))
        checked += 1
    assert checked >= (10 if contract == ADMIN_CONTRACT else 2)


def _dump(instance: BaseModel) -> dict:
    return instance.model_dump(mode="json", by_alias=True, exclude_unset=True)


def conforms(pointer: str, value: object) -> None:
    """``value`` is valid against the contract's schema at ``pointer``."""
    doc, _, path = contract_of(pointer)
    schema = {"$ref": f"#{path}", "components": doc["components"]}
    errors = [str(e) for e in jsonschema_rs.validator_for(schema).iter_errors(value)]
    assert not errors, f"{pointer}: {errors}"


def test_requests_refuse_what_the_contract_refuses():
    with pytest.raises(ValidationError, match="action"):
        m.FaultRuleInput.model_validate({"match": {"method": "GET"}})
    with pytest.raises(ValidationError, match="extra"):
        m.FaultRuleInput.model_validate({"action": {"type": "latency"}, "tiems": 3})  # a typo
    with pytest.raises(ValidationError, match="exactly one"):
        m.ClockMove(advance="15m", to=START)
    with pytest.raises(ValidationError):
        m.SubscriptionInput(event="*", url="http://x", secret="not-a-secret")
    rule = m.FaultRuleInput(id="off", action=m.FaultAction(type="vehicle_offline"),
                            window=m.FaultWindow(from_=START, until="+1d"), times=2)
    assert rule.to_json() == {"id": "off", "action": {"type": "vehicle_offline"}, "times": 2,
                              "window": {"from": "2026-01-05T08:00:00Z", "until": "+1d"}}
    conforms(f"{ADMIN_CONTRACT}#/components/schemas/FaultRuleInput", rule.to_json())


# --- the typed clients against running services ------------------------------
@pytest.fixture
async def world(tmp_path):
    async with Stack(services=["iot"], seed=0, core={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"}
                     ) as stack:
        yield stack


LATENCY = {"id": "slow-status", "match": {"method": "GET", "path": "/vehicles/{vin}/status"},
           "action": {"type": "latency", "params": {"ms": 2000, "jitter_ms": 500}}, "times": 3}


async def test_async_admin_answers_models_that_conform_to_the_contract(world):
    async with AsyncAdmin(world.url("iot")) as admin, aiohttp.ClientSession(world.url("iot")) as http:
        health = await admin.health()
        assert isinstance(health, m.Health) and health.service == "iot" and health.clock.now == START
        assert health.busy == 0 and health.clock.mode == "virtual"
        assert (await admin.advance("15m")).now == START + timedelta(minutes=15)
        assert (await admin.set_clock(START + timedelta(hours=1))).now == START + timedelta(hours=1)
        assert (await admin.clock()).now == START + timedelta(hours=1)

        rule = await admin.add_fault(LATENCY)
        assert isinstance(rule, m.FaultRule) and (rule.id, rule.remaining, rule.hits) == ("slow-status", 3, 0)
        batch = await admin.add_faults([m.FaultRuleInput(action=m.FaultAction(type="vehicle_offline"),
                                                         window=m.FaultWindow(until="+1d")),
                                        {"action": {"type": "http_error", "params": {"status": 503}}, "times": 1}])
        assert batch[0].window.until == START + timedelta(hours=1, days=1)  # resolved to an instant
        assert await admin.add_faults([]) == []
        listing = await admin.faults()
        assert [r.id for r in listing.rules] == ["slow-status", batch[0].id, batch[1].id]
        assert {"latency", "vehicle_offline"} <= {a.name for a in listing.actions}
        assert await admin.delete_fault("slow-status") == 1
        assert await admin.clear_faults() == 2

        for _ in range(3):
            async with http.get("/fleet/magic-vins") as resp:
                assert resp.status == 200
        page = await admin.journal(limit=2)
        assert [e.seq for e in page.entries] == [1, 2] and page.next == 2 and page.dropped == 0
        entries = await admin.journal_entries()
        assert all(isinstance(e, m.JournalEntry) for e in entries) and len(entries) == 3
        request = next(e for e in entries if e.kind == "request" and e.operation == "getMagicVins")
        assert request.vt == START + timedelta(hours=1) and request.direction == "in"
        assert await admin.clear_journal() == len(entries)

        subs = await admin.webhooks()
        assert [(s.event, s.secret_set) for s in subs] == [("*", True)]
        mine = await admin.set_webhooks([m.SubscriptionInput(event="otaStatus", url=world.url("core") + "/x",
                                                             secret=DEFAULT_SECRET)])
        assert [(s.event, s.url) for s in mine] == [("otaStatus", world.url("core") + "/x")]
        assert await admin.reset() == m.ResetResult(reset=True, service="iot")
        assert await admin.webhooks() == subs  # back to how it started

        for pointer, value in [("Health", health), ("FaultRule", rule), ("FaultList", listing),
                               ("JournalPage", page), ("Subscription", subs[0])]:
            conforms(f"{ADMIN_CONTRACT}#/components/schemas/{pointer}", _dump(value))
    async with AsyncAdmin(world.url("core")) as core:
        report = await core.audit()
        assert isinstance(report, m.AuditReport) and report.ok and report.settled and report.in_flight
        conforms(f"{CORE_CONTRACT}#/components/schemas/AuditReport", _dump(report))
        assert (await core.health()).service == "core"


async def test_the_sync_admin_answers_the_same_models(world):
    admin = Admin(world.url("iot"))

    def session() -> tuple:
        health = admin.health()
        moved = admin.advance(90)
        rule = admin.add_fault(m.FaultRuleInput.model_validate(LATENCY))
        return health, moved, rule, admin.faults(), admin.journal_entries(), admin.webhooks(), admin.reset()

    health, moved, rule, listing, entries, subs, reset = await asyncio.to_thread(session)
    async with AsyncAdmin(world.url("iot")) as typed:
        assert health.service == "iot" and moved.now == START + timedelta(seconds=90)
        assert rule.id == "slow-status" and [r.id for r in listing.rules] == ["slow-status"]
        assert all(e.service == "iot" for e in entries) and subs == await typed.webhooks()
        assert reset.reset and (await typed.faults()).rules == []
    assert (await asyncio.to_thread(Admin(world.url("core")).audit)).ok


async def test_errors_name_the_problem_and_its_violations(world):
    admin = Admin(world.url("iot"))
    with pytest.raises(AdminProblem) as unknown:
        await asyncio.to_thread(admin.add_fault, {"action": {"type": "explode"}})
    assert unknown.value.status == 400 and "unknown fault action 'explode'" in str(unknown.value)
    assert isinstance(unknown.value, AdminError) and unknown.value.model.title == "Invalid fault rule"
    with pytest.raises(AdminProblem) as backward:
        await asyncio.to_thread(admin.set_clock, "2020-01-01T00:00:00Z")
    assert backward.value.status == 409 and "backward" in str(backward.value)
    with pytest.raises(AdminProblem) as missing:
        await asyncio.to_thread(admin.delete_fault, "no-such-rule")
    assert missing.value.status == 404

    async with AsyncAdmin(world.url("iot")) as typed:
        with pytest.raises(AdminProblem) as schema:  # the contract's check at the service: latency needs params
            await typed.add_fault(m.FaultRuleInput(action=m.FaultAction(type="latency")))
        assert schema.value.status == 400
        # the field at fault, not the oneOf (one rule or a batch) the body failed
        assert schema.value.model.violations and 'body /action: "params" is a required property' in str(schema.value)
        with pytest.raises(AdminProblem) as limit:
            await typed.journal(limit=0)
        assert limit.value.status == 400 and "limit: 0 is less than the minimum of 1" in str(limit.value)
        with pytest.raises(ValidationError):  # refused here, before any request
            await typed.add_fault({"action": {"type": "Not A Type"}})


async def test_a_token_is_sent_as_bearer():
    async with Stack(services=["iot"], with_sink=False, admin_token="s3cret") as stack:
        with pytest.raises(AdminProblem) as refused:
            await asyncio.to_thread(Admin(stack.url("iot")).health)
        assert refused.value.status == 401
        assert (await asyncio.to_thread(Admin(stack.url("iot"), token="s3cret").health)).service == "iot"
        async with AsyncAdmin(stack.url("iot"), token="s3cret") as admin:
            assert (await admin.health()).service == "iot"


async def test_nothing_listening_is_unreachable_for_both_clients():
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(AdminUnreachable) as sync:
        await asyncio.to_thread(Admin(url).health)
    assert sync.value.reason == "connection refused" and url in str(sync.value)
    async with AsyncAdmin(url) as admin:
        with pytest.raises(AdminUnreachable) as not_async:
            await admin.health()
    assert not_async.value.reason == "connection refused"


async def test_a_server_that_is_not_an_admin_service_is_a_clear_error(aiohttp_free_server):
    with pytest.raises(AdminProblem) as not_ours:
        await asyncio.to_thread(Admin(aiohttp_free_server).health)
    assert not_ours.value.status == 404 and "GET" in str(not_ours.value)


@pytest.fixture
async def aiohttp_free_server():
    from aiohttp import web

    runner = web.AppRunner(web.Application(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()

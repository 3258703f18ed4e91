"""The core's wire models (``caas_core/clients/wire``) against the contracts they read.

The contracts are the source of truth; the models are a second, smaller copy of them (only
the fields the core reads), so this checks that the copy cannot drift: every model field
exists in the schema of the answer or webhook it parses, with a compatible type (an enum
the same values, a number the same or a looser range, null where the contract allows
null, optional where the contract does not require it), and every example the contract
gives for that answer or webhook parses. Every model is covered: each one is checked
against a contract here, or nested in (or a base of) one that is.
"""

from __future__ import annotations

import datetime as dt
import inspect
import types
from collections.abc import Iterator
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from pydantic import AwareDatetime, BaseModel, Field

from caas_core.api.app import WEBHOOK_SOURCES
from caas_core.clients.wire import base, factory, iot, payments, registries, vss
from caas_core.flows.webhooks import PARSERS
from caas_sim import catalogue
from caas_sim.simulators.kit.contract import CONTRACTS_DIR

#: Every registry of the catalogue: the core reads them all with one model.
REGISTRIES = tuple(e.contract for e in catalogue.REGISTRY_COUNTRIES.values())

#: (model, contract, where): where is ("response", operationId) for an operation's 2xx JSON
#: answer, or ("webhook", name) for a webhook's body.
CASES: list[tuple[type[BaseModel], str, tuple[str, str]]] = [
    (iot.ActivationAccepted, "iot.yaml", ("response", "activateService")),
    (iot.ActivationAccepted, "iot.yaml", ("response", "deactivateService")),
    (iot.VehicleStatus, "iot.yaml", ("response", "getVehicleStatus")),
    (iot.OtaStatusCallback, "iot.yaml", ("webhook", "otaStatus")),
    (vss.MaintenanceStatus, "vss.yaml", ("response", "getMaintenanceStatus")),
    (payments.PaymentInitiated, "payments.yaml", ("response", "initiatePayment")),
    (payments.Payment, "payments.yaml", ("response", "getPayment")),
    (payments.PaymentList, "payments.yaml", ("response", "listPayments")),
    (payments.PaymentMethod, "payments.yaml", ("response", "getPaymentMethod")),
    (payments.Refund, "payments.yaml", ("response", "refundPayment")),
    (payments.SettlementNotification, "payments.yaml", ("webhook", "paymentSettlement")),
    (payments.RefundNotification, "payments.yaml", ("webhook", "refundStatus")),
    (payments.ChargebackNotification, "payments.yaml", ("webhook", "paymentChargeback")),
    (factory.OrderConfirmation, "factory.yaml", ("response", "placeOrder")),
    (factory.OrderList, "factory.yaml", ("response", "findOrders")),
    (factory.Delivery, "factory.yaml", ("response", "scheduleDelivery")),
    (factory.OrderStatusNotification, "factory.yaml", ("webhook", "orderStatus")),
    (factory.DeliveryStatusNotification, "factory.yaml", ("webhook", "deliveryStatus")),
    *[(registries.Registration, contract, ("response", op)) for contract in REGISTRIES
      for op in ("createRegistration", "getRegistration", "provideAdditionalInfo")],
    (registries.RegistrationStatusEvent, "registry-uk.yaml", ("webhook", "registrationStatus")),
]


# --- the contracts -----------------------------------------------------------------------

@cache
def _doc(contract: str) -> dict:
    return yaml.safe_load((CONTRACTS_DIR / contract).read_text())


def _resolve(contract: str, node: Any) -> Any:
    """``node`` with its ``$ref`` (a local one) followed, siblings kept, repeatedly."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"{contract}: only local $refs are expected, got {ref}"
        target: Any = _doc(contract)
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _media(contract: str, where: tuple[str, str]) -> dict:
    """The JSON media type (schema and examples) of an operation's 2xx answer or a webhook's body."""
    kind, name = where
    doc = _doc(contract)
    if kind == "webhook":
        body = _resolve(contract, doc["webhooks"][name]["post"]["requestBody"])
        return _resolve(contract, body["content"]["application/json"])
    found = [op for item in doc["paths"].values() for op in item.values()
             if isinstance(op, dict) and op.get("operationId") == name]
    assert len(found) == 1, f"{contract}: no single operation {name}"
    answers = [(status, _resolve(contract, r)) for status, r in found[0]["responses"].items()
               if str(status).startswith("2")]
    media = [r["content"]["application/json"] for _, r in answers if "application/json" in r.get("content", {})]
    assert len(media) == 1, f"{contract} {name}: expected one 2xx JSON answer, found {[s for s, _ in answers]}"
    return _resolve(contract, media[0])


def _examples(contract: str, media: dict) -> list[Any]:
    found = []
    if "example" in media:
        found.append(media["example"])
    found += [_resolve(contract, e)["value"] for e in (media.get("examples") or {}).values()]
    schema = _resolve(contract, media["schema"])
    if "example" in schema:
        found.append(schema["example"])
    found += list(schema.get("examples") or [])
    return found


def _alternatives(contract: str, schema: Any) -> list[dict]:
    """The schema as a list of alternatives with one type each (oneOf/anyOf flattened, a type
    list split, allOf members' properties merged in)."""
    schema = _resolve(contract, schema)
    if not isinstance(schema, dict):
        return [{}]
    for key in ("oneOf", "anyOf"):
        if key in schema:
            rest = {k: v for k, v in schema.items() if k != key}
            return [{**rest, **alt} for option in schema[key] for alt in _alternatives(contract, option)]
    if "allOf" in schema:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for member in schema["allOf"]:
            member = _resolve(contract, member)
            merged["properties"] = {**merged.get("properties", {}), **member.get("properties", {})}
            merged["required"] = [*merged.get("required", []), *member.get("required", [])]
        schema = merged
    kind = schema.get("type")
    if isinstance(kind, list):
        return [{**schema, "type": k} for k in kind]
    if kind is None:
        values = [schema["const"]] if "const" in schema else schema.get("enum")
        if values is not None:
            kinds = {_json_type(v) for v in values}
            return [{**schema, "type": k, "enum": [v for v in values if _json_type(v) == k]} for k in sorted(kinds)]
        if "properties" in schema:
            return [{**schema, "type": "object"}]
    return [schema]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {str: "string", float: "number", dict: "object", list: "array"}[type(value)]


def _values(alt: dict) -> set | None:
    """The values an alternative is limited to (enum, const), or None for any of its type."""
    if "const" in alt:
        return {alt["const"]}
    return set(alt["enum"]) if "enum" in alt else None


# --- the models --------------------------------------------------------------------------

def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without Annotated and None, whether it allows None)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        nullable = len(rest) < len(args)
        if len(rest) == 1:
            inner, inner_nullable = _unwrap(rest[0])
            return inner, nullable or inner_nullable
        return Union[tuple(rest)], nullable  # noqa: UP007 (rebuilt from parts)
    return annotation, False


def _problems(contract: str, annotation: Any, schema: Any, where: str, metadata=()) -> Iterator[str]:
    """How a model's ``annotation`` at ``where`` disagrees with the contract's ``schema``."""
    kind, nullable = _unwrap(annotation)
    alts = _alternatives(contract, schema)
    if any(a.get("type") == "null" for a in alts) and not nullable:
        yield f"{where}: the contract allows null, the model does not"
    alts = [a for a in alts if a.get("type") != "null"]
    by_type = {a.get("type"): a for a in alts}
    if get_origin(kind) is Literal:
        wanted = set(get_args(kind))
        types_ = {_json_type(v) for v in wanted}
        allowed = [a for a in alts if a.get("type") in types_]
        if not allowed:
            yield f"{where}: the model wants one of {sorted(wanted)}, the contract {sorted(by_type)}"
            return
        values = [_values(a) for a in allowed]
        if any(v is None for v in values):
            yield f"{where}: the contract allows any {'/'.join(sorted(types_))}, the model only {sorted(wanted)}"
            return
        contract_values = set().union(*values)
        if contract_values - wanted:
            yield f"{where}: the contract allows {sorted(contract_values - wanted)}, the model refuses them"
        if wanted - contract_values:
            yield f"{where}: the model expects {sorted(wanted - contract_values)}, unknown to the contract"
        return
    if inspect.isclass(kind) and issubclass(kind, BaseModel):
        if "object" not in by_type:
            yield f"{where}: the model reads an object, the contract has {sorted(by_type)}"
            return
        yield from _model_problems(contract, kind, by_type["object"], where)
        return
    if get_origin(kind) is list:
        if "array" not in by_type:
            yield f"{where}: the model reads an array, the contract has {sorted(by_type)}"
            return
        yield from _problems(contract, get_args(kind)[0], by_type["array"].get("items", {}), f"{where}[]")
        return
    if kind is AwareDatetime or inspect.isclass(kind) and issubclass(kind, dt.datetime):
        string = by_type.get("string")
        if string is None or string.get("format") != "date-time":
            yield f"{where}: the model reads an instant, the contract has {sorted(by_type)} (not format date-time)"
        return
    json_type = {str: "string", int: "integer", bool: "boolean", float: "number"}.get(kind)
    if json_type is None:
        yield f"{where}: no check for the model's type {kind!r}"
        return
    if json_type not in by_type:
        yield f"{where}: the model reads {json_type}, the contract has {sorted(by_type)}"
        return
    alt = by_type[json_type]
    for bound in metadata:  # the model's range must hold every value the contract allows
        for attr, key, stricter in (("ge", "minimum", lambda m, c: m > c), ("le", "maximum", lambda m, c: m < c)):
            limit = getattr(bound, attr, None)
            if limit is not None and (key not in alt or stricter(limit, alt[key])):
                yield f"{where}: the model's {attr} {limit} refuses values the contract allows ({key} {alt.get(key)})"


def _model_problems(contract: str, model: type[BaseModel], schema: dict, where: str) -> Iterator[str]:
    properties, required = schema.get("properties", {}), set(schema.get("required", []))
    for name, field in model.model_fields.items():
        key = field.alias or name
        at = f"{where}.{key}"
        if key not in properties:
            yield f"{at}: not in the contract"
            continue
        yield from _problems(contract, field.annotation, properties[key], at, field.metadata)
        if field.is_required() and key not in required:
            yield f"{at}: the model requires it, the contract does not"


def _case_id(case) -> str:
    model, contract, (_, name) = case
    return f"{contract}:{name}:{model.__name__}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_the_model_matches_its_contract_and_parses_its_examples(case):
    model, contract, where = case
    media = _media(contract, where)
    schema = _alternatives(contract, media["schema"])
    assert [a.get("type") for a in schema] == ["object"], f"{contract} {where}: not an object"
    assert list(_model_problems(contract, model, schema[0], model.__name__)) == []
    for example in _examples(contract, media):
        model.model_validate(example)


def _models() -> set[type[base.Wire]]:
    found: set[type[base.Wire]] = set()
    for module in (iot, vss, payments, factory, registries):
        found |= {v for v in vars(module).values()
                  if inspect.isclass(v) and issubclass(v, base.Wire) and v.__module__ == module.__name__}
    return found


def _nested(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            ann = stack.pop()
            if inspect.isclass(ann) and issubclass(ann, BaseModel):
                yield ann
                yield from _nested(ann)
            else:
                stack += list(get_args(ann))


def test_every_model_is_checked_against_a_contract():
    checked = {model for model, _, _ in CASES}
    covered = checked | {n for m in checked for n in _nested(m)} | {b for m in checked for b in m.__mro__}
    assert _models() - covered == set()


def test_every_model_ignores_unknown_fields_and_takes_json_types_as_they_are():
    for model in _models():
        assert model.model_config.get("extra") == "ignore" and model.model_config.get("strict"), model


def test_the_webhook_examples_of_the_core_contract_parse():
    """What contracts/core.yaml shows its receivers getting is what the core parses (and acts on)."""
    paths = _doc("core.yaml")["paths"]
    seen = set()
    for receiver, source in WEBHOOK_SOURCES.items():
        media = _resolve("core.yaml", paths[f"/caas/webhooks/{receiver}"]["post"]["requestBody"])
        for example in _examples("core.yaml", _resolve("core.yaml", media["content"]["application/json"])):
            PARSERS[source](example)  # Unusable if the core could not act on it
            seen.add(source)
    assert seen == set(PARSERS)


class _Drifted(base.Wire):  # what a model out of step with contracts/iot.yaml looks like
    requestId: int                                        # a string in the contract
    status: Literal["QUEUED", "IN_PROGRESS", "DONE"]      # no COMPLETED nor FAILED; DONE unknown
    timestamp: str | None = None
    renamed: str = ""                                     # not in the contract


class _Strict(base.Wire):
    errorCode: iot.OtaErrorCode                           # null allowed by the contract
    serviceId: str | None = None


class _Narrow(base.Wire):
    compliancePercent: int = Field(ge=10)                 # the contract allows 0-100


def test_drift_between_a_model_and_its_contract_is_caught():
    def problems(model, schema):
        return sorted(_model_problems("iot.yaml", model, _alternatives("iot.yaml", schema)[0], model.__name__))

    drifted = problems(_Drifted, {"$ref": "#/components/schemas/ActivationAccepted"})
    assert [p.split(":")[0] for p in drifted] == ["_Drifted.renamed", "_Drifted.requestId", "_Drifted.status",
                                                  "_Drifted.status"], drifted
    assert problems(_Strict, {"$ref": "#/components/schemas/OtaStatusCallback"}) == [
        "_Strict.errorCode: the contract allows null, the model does not"]
    narrow = _model_problems("vss.yaml", _Narrow, _alternatives("vss.yaml", {
        "$ref": "#/components/schemas/BlockCompliance"})[0], "_Narrow")
    assert [p.split(":")[0] for p in narrow] == ["_Narrow.compliancePercent"]


@pytest.mark.parametrize("source, body, outcome", [
    ("payments", {"event": "paymentSettlement", "paymentId": "pay_1", "status": "FAILED"},
     "malformed paymentSettlement: sequence: Field required"),
    ("payments", {"event": "paymentRefunded", "paymentId": "pay_1"}, "ignored paymentRefunded"),
    ("payments", ["not", "an", "object"], "malformed: no event"),
    ("factory", {"eventType": "ORDER_STATUS", "orderId": "o", "sequence": "3", "notification": "STATUS_CHANGED",
                 "status": "IN_TRANSIT"}, "malformed ORDER_STATUS: sequence: Input should be a valid integer"),
    ("iot", {"requestId": "ota_1", "vin": "V", "serviceId": "s", "status": "ACTIVATED", "errorCode": "MELTED"},
     "malformed otaStatus: errorCode: Input should be"),
    ("registry-uk", {"registrationId": "reg_1", "status": "LOST"}, "malformed registrationStatus: status: Input"),
])
def test_a_webhook_the_core_cannot_act_on_says_why(source, body, outcome):
    with pytest.raises(base.Unusable) as exc:
        PARSERS[source](body)
    assert exc.value.outcome.startswith(outcome), exc.value.outcome


def test_unknown_fields_are_ignored_and_instants_are_strings_with_an_offset():
    body = {"event": "paymentChargeback", "sequence": 4, "paymentId": "pay_1", "amount": {"value": 4999,
            "currency": "EUR"}, "reason": "FRAUDULENT", "fee": {"value": 1500, "currency": "EUR"},
            "chargebackDate": "2026-01-13T14:21:07.000Z", "chargebackId": "cb_1", "addedLater": {"x": 1}}
    event = payments.parse_event(body)
    assert isinstance(event, payments.ChargebackNotification) and event.amount.value == 4999
    assert event.chargebackDate == dt.datetime(2026, 1, 13, 14, 21, 7, tzinfo=dt.UTC)
    for date in (1768314067, "2026-01-13T14:21:07"):  # a number, or no offset: not the contract's instant
        with pytest.raises(base.Unusable):
            payments.parse_event({**body, "chargebackDate": date})

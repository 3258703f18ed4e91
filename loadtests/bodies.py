"""Request and webhook bodies built from the contracts' schemas.

A body is generated from the schema of the operation (or of the webhook) in
``contracts/*.yaml``: every required property, enums, formats and patterns, faker
for names, e-mails and addresses. The fields a load scenario needs fixed (a VIN, a
status) are then overlaid, and the result is validated against the same schema. So a
contract change either flows into the bodies by itself (a new required field is
generated) or stops the load test at start with the violation (an overlaid field the
contract no longer accepts): it can never silently send what the API refuses.

Pure Python with no gevent-sensitive imports: usable from locust and from pytest.
"""

from __future__ import annotations

import copy
import random
import re
import string
from datetime import UTC, datetime, timedelta
from functools import cache
from re import _constants as sre_constants  # the regex parser (sre_parse is deprecated)
from re import _parser as sre_parse
from typing import Any

import jsonschema_rs
import yaml
from faker import Faker

from caas_sim import catalogue

CONTRACTS = catalogue.CONTRACTS_DIR
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PRINTABLE = string.ascii_letters + string.digits


class ContractDrift(ValueError):
    """The body a load scenario wants to send no longer satisfies the contract."""


@cache
def contract(name: str) -> dict:
    return yaml.load((CONTRACTS / f"{name}.yaml").read_text(), Loader=_Loader)


def _deref(doc: dict, node: Any, depth: int = 0) -> Any:
    if depth > 40:
        return {}
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _deref(doc, merged, depth + 1)
        return {k: _deref(doc, v, depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [_deref(doc, v, depth + 1) for v in node]
    return node


@cache
def request_schema(contract_name: str, method: str, path: str) -> dict:
    doc = contract(contract_name)
    operation = doc["paths"][path][method.lower()]
    return _deref(doc, operation["requestBody"]["content"]["application/json"]["schema"])


def request_example(contract_name: str, method: str, path: str) -> dict:
    """The operation's request example (a copy): values the contract's authors know the
    domain accepts."""
    operation = contract(contract_name)["paths"][path][method.lower()]
    return copy.deepcopy(operation["requestBody"]["content"]["application/json"]["example"])


@cache
def webhook_schema(contract_name: str, webhook: str) -> dict:
    doc = contract(contract_name)
    operation = doc["webhooks"][webhook]["post"]
    return _deref(doc, operation["requestBody"]["content"]["application/json"]["schema"])


@cache
def _validator(schema_key: tuple) -> Any:
    kind, *args = schema_key
    schema = request_schema(*args) if kind == "request" else webhook_schema(*args)
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True)


class BodyFactory:
    """Seeded generator of schema-valid bodies (one per locust user: cheap)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker()
        self.fake.seed_instance(seed)

    # -- public --------------------------------------------------------------------
    def request(self, contract_name: str, method: str, path: str, **overlay: Any) -> dict:
        body = self.generate(request_schema(contract_name, method, path))
        return self._checked(("request", contract_name, method, path), _overlaid(body, overlay),
                             f"{method.upper()} {path} of {contract_name}.yaml")

    def webhook(self, contract_name: str, webhook: str, **overlay: Any) -> dict:
        body = self.generate(webhook_schema(contract_name, webhook))
        return self._checked(("webhook", contract_name, webhook), _overlaid(body, overlay),
                             f"webhook {webhook} of {contract_name}.yaml")

    def _checked(self, key: tuple, body: dict, what: str) -> dict:
        errors = [f"{'/'.join(map(str, e.instance_path)) or '/'}: {e.message}"
                  for e in _validator(key).iter_errors(body)]
        if errors:
            raise ContractDrift(f"the load test's body for {what} breaks the contract: " + "; ".join(errors[:5]))
        return body

    # -- generation ------------------------------------------------------------------
    def generate(self, schema: dict, name: str = "") -> Any:
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            choices = [v for v in schema["enum"] if v is not None] or schema["enum"]
            return self.rng.choice(choices)
        for key in ("oneOf", "anyOf"):
            if key in schema:
                options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
                return self.generate({**{k: v for k, v in schema.items() if k != key}, **options[0]}, name)
        if "allOf" in schema:
            merged: dict = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                merged = _merge_schemas(merged, part)
            return self.generate(merged, name)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "string"
        return getattr(self, f"_{kind}")(schema, name)

    def _object(self, schema: dict, name: str) -> dict:
        out = {}
        for prop in schema.get("required", []):
            out[prop] = self.generate(schema.get("properties", {}).get(prop, {}), prop)
        return out

    def _array(self, schema: dict, name: str) -> list:
        count = max(schema.get("minItems", 0), 1 if schema.get("minItems", 0) else 0)
        return [self.generate(schema.get("items", {}), name) for _ in range(count)]

    def _string(self, schema: dict, name: str) -> str:
        fmt = schema.get("format")
        now = datetime.now(UTC)
        if fmt == "date-time":
            return (now - timedelta(seconds=self.rng.randrange(3600))).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z")
        if fmt == "date":
            return (now + timedelta(days=self.rng.randrange(1, 60))).date().isoformat()
        if fmt == "email":
            return self.fake.email()
        if fmt in ("uri", "url"):
            return self.fake.url()
        if fmt == "uuid":
            return str(self.fake.uuid4())
        if "pattern" in schema:
            value = sample_regex(schema["pattern"], self.rng)
        else:
            value = self._faked(name)
        low, high = schema.get("minLength", 0), schema.get("maxLength", 10_000)
        value = value[:high]
        while len(value) < low:
            value += self.rng.choice(_PRINTABLE)
        return value

    def _faked(self, name: str) -> str:
        lowered = name.lower()
        if "first" in lowered:
            return self.fake.first_name()
        if "last" in lowered or "surname" in lowered:
            return self.fake.last_name()
        if "name" in lowered:
            return self.fake.name()
        if "street" in lowered or "address" in lowered:
            return self.fake.street_address()
        if "city" in lowered:
            return self.fake.city()
        if "postal" in lowered or "zip" in lowered:
            return self.fake.postcode()
        if "description" in lowered or "reason" in lowered:
            return self.fake.sentence()
        return self.fake.lexify("????????")

    def _integer(self, schema: dict, name: str) -> int:
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1 if "exclusiveMinimum" in schema else 0)
        high = schema.get("maximum", max(low, 0) + 10_000)
        return self.rng.randint(int(low), int(high))

    def _number(self, schema: dict, name: str) -> float:
        return float(self._integer(schema, name))

    def _boolean(self, schema: dict, name: str) -> bool:
        return self.rng.random() < 0.5

    def _null(self, schema: dict, name: str) -> None:
        return None


def _merge_schemas(a: dict, b: dict) -> dict:
    out = {**a, **b}
    if "properties" in a or "properties" in b:
        out["properties"] = {**a.get("properties", {}), **b.get("properties", {})}
    if "required" in a or "required" in b:
        out["required"] = list(dict.fromkeys([*a.get("required", []), *b.get("required", [])]))
    return out


def _overlaid(body: dict, overlay: dict) -> dict:
    out = dict(body)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _overlaid(out[key], value)
        else:
            out[key] = value
    return out


# --- regular expressions -----------------------------------------------------------------
def sample_regex(pattern: str, rng: random.Random) -> str:
    """A string matching ``pattern`` (the subset of regex contracts use), checked."""
    for _ in range(20):
        value = "".join(_emit(sre_parse.parse(pattern), rng))
        if re.search(pattern, value):
            return value
    raise ContractDrift(f"cannot generate a value for the pattern {pattern!r}")


def _emit(parsed, rng: random.Random) -> list[str]:
    out: list[str] = []
    for op, arg in parsed:
        if op is sre_constants.LITERAL:
            out.append(chr(arg))
        elif op is sre_constants.NOT_LITERAL:
            out.append(rng.choice([c for c in _PRINTABLE if ord(c) != arg]))
        elif op is sre_constants.ANY:
            out.append(rng.choice(_PRINTABLE))
        elif op is sre_constants.IN:
            out.append(_class(arg, rng))
        elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            low, high, sub = arg
            high = min(high, low + 6) if high != sre_constants.MAXREPEAT else low + 6
            for _ in range(rng.randint(low, max(low, high))):
                out += _emit(sub, rng)
        elif op is sre_constants.SUBPATTERN:
            out += _emit(arg[-1], rng)
        elif op is sre_constants.BRANCH:
            out += _emit(rng.choice(arg[1]), rng)
        # AT (anchors) and the rest emit nothing
    return out


def _class(items, rng: random.Random) -> str:
    negate = any(op is sre_constants.NEGATE for op, _ in items)
    allowed: list[str] = []
    for op, arg in items:
        if op is sre_constants.LITERAL:
            allowed.append(chr(arg))
        elif op is sre_constants.RANGE:
            allowed += [chr(c) for c in range(arg[0], min(arg[1], arg[0] + 200) + 1)]
        elif op is sre_constants.CATEGORY:
            allowed += {sre_constants.CATEGORY_DIGIT: list(string.digits),
                        sre_constants.CATEGORY_WORD: list(_PRINTABLE + "_"),
                        sre_constants.CATEGORY_SPACE: [" "]}.get(arg, list(_PRINTABLE))
    if negate:
        allowed = [c for c in _PRINTABLE if c not in allowed]
    return rng.choice(allowed or list(_PRINTABLE))

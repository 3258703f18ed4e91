"""contracts/core.yaml enforced on every request: parameters and JSON bodies.

The core imports nothing of the simulators (DESIGN.md: they share a protocol,
not code), so it compiles its own validators from its own contract, once, with
jsonschema-rs. A request that breaks the contract gets 400 with each violation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import yaml

from .problems import Problem

CONTRACT = Path(__file__).resolve().parents[2] / "contracts" / "core.yaml"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    location: str
    required: bool
    validator: Any


@dataclass(frozen=True, slots=True)
class Operation:
    params: tuple[Param, ...]
    body: Any  # validator or None


@lru_cache(maxsize=1)
def operations() -> dict[tuple[str, str], Operation]:
    """(METHOD, path template) -> its compiled checks."""
    doc = yaml.load(CONTRACT.read_text(), Loader=_Loader)

    def deref(node: Any, depth: int = 0) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target: Any = doc
                for part in node["$ref"][2:].split("/"):
                    target = target[part]
                return deref({**target, **{k: v for k, v in node.items() if k != "$ref"}}, depth + 1)
            return {k: deref(v, depth + 1) for k, v in node.items()}
        if isinstance(node, list):
            return [deref(v, depth + 1) for v in node]
        return node

    compiled = {}
    for template, item in doc["paths"].items():
        for method in ("get", "post", "put", "delete", "patch"):
            if method not in item:
                continue
            spec = deref(item[method])
            shared = deref(item.get("parameters", []))
            params = tuple(Param(p["name"].lower() if p["in"] == "header" else p["name"], p["in"],
                                 p.get("required", p["in"] == "path"),
                                 jsonschema_rs.Draft202012Validator(p["schema"], validate_formats=True))
                           for p in [*shared, *spec.get("parameters", [])] if p["in"] in ("path", "header"))
            body = None
            content = (spec.get("requestBody") or {}).get("content", {})
            if "application/json" in content:
                body = jsonschema_rs.Draft202012Validator(content["application/json"].get("schema", {}),
                                                          validate_formats=True)
            compiled[(method.upper(), template)] = Operation(params, body)
    return compiled


async def check(request) -> Any:
    """Validate the request of a matched route; returns the parsed JSON body (or None)."""
    info = request.match_info
    template = info.route.resource.canonical if info.route.resource else None
    op = operations().get((request.method, template))
    if op is None:
        return None
    violations = []
    for p in op.params:
        value = info.get(p.name) if p.location == "path" else request.headers.get(p.name)
        if value is None:
            if p.required:
                violations.append({"location": p.location, "pointer": p.name, "message": "required"})
            continue
        try:
            valid = p.validator.is_valid(value)
        except UnicodeEncodeError:
            valid = False
        if not valid:
            violations.append({"location": p.location, "pointer": p.name,
                               "message": f"{value!r} does not match the contract"})
    body = None
    if op.body is not None:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError as exc:
            violations.append({"location": "body", "pointer": "", "message": f"not JSON: {exc}"})
        else:
            violations += [{"location": "body", "pointer": "/" + "/".join(map(str, e.instance_path)),
                            "message": e.message} for e in op.body.iter_errors(body)]
    if violations:
        raise Problem(400, "Request violates contract",
                      "; ".join(f"{v['location']} {v['pointer']}: {v['message']}" for v in violations),
                      kind="contract-violation", violations=violations)
    return body

"""contracts/core.yaml enforced on every request: headers, parameters and JSON bodies.

The core imports nothing of the simulators (DESIGN.md: they share a protocol,
not code), so it compiles its own validators from its own contract, once, with
jsonschema-rs. A request that breaks the contract gets 400 with each violation;
a JSON body under another media type, 415.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jsonschema_rs
import orjson
import yaml

from caas_sim import catalogue

from .problems import Problem

CONTRACT = catalogue.CONTRACTS_DIR / catalogue.CORE_CONTRACT
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    location: str
    required: bool
    validator: Any
    max_length: int | None = None


@dataclass(frozen=True, slots=True)
class Operation:
    params: tuple[Param, ...]
    body: Any  # validator or None
    media_types: tuple[str, ...] = ()  # what the JSON body may be sent as


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
                                 jsonschema_rs.Draft202012Validator(p["schema"], validate_formats=True),
                                 p["schema"].get("maxLength"))
                           for p in [*shared, *spec.get("parameters", [])] if p["in"] in ("path", "header"))
            body = None
            content = (spec.get("requestBody") or {}).get("content", {})
            if "application/json" in content:
                body = jsonschema_rs.Draft202012Validator(content["application/json"].get("schema", {}),
                                                          validate_formats=True)
            compiled[(method.upper(), template)] = Operation(params, body, tuple(m for m in content if "json" in m))
    return compiled


@lru_cache(maxsize=1)
def header_limits() -> tuple[tuple[str, int], ...]:
    """(header in lower case, the longest value any operation of the contract allows)."""
    limits: dict[str, int] = {}
    for op in operations().values():
        for p in op.params:
            if p.location == "header" and p.max_length is not None:
                limits[p.name] = max(limits.get(p.name, 0), p.max_length)
    return tuple(limits.items())


def check_headers(headers) -> None:
    """400 naming the first header that is not printable ASCII or is longer than the
    contract allows.

    aiohttp hands header bytes over decoded (UTF-8, undecodable bytes as surrogates): an
    ``.encode()`` or ``hmac.compare_digest`` of such a value raises, which was a 500. Every
    header is checked, read or not, so that code reading one tomorrow is covered too."""
    if not _is_text("".join(headers.values())):  # all at once: the common case costs one pass
        for name, value in headers.items():
            if not _is_text(value):
                raise Problem(400, "Invalid header", f"the {name} header must be printable ASCII",
                              kind="invalid-header", header=str(name))
    get = headers.get
    for name, limit in header_limits():
        value = get(name)
        if value is not None and len(value) > limit:
            raise Problem(400, "Invalid header", f"the {name} header is longer than {limit} characters",
                          kind="invalid-header", header=name)


def _is_text(value: str) -> bool:
    # HTAB is the one control character a field value may hold (RFC 9110, 5.5).
    return value.isascii() and value.replace("\t", " ").isprintable()


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
        # Before anything parses the body, let alone acts on it: JSON under another label is refused.
        if raw and request.content_type not in op.media_types:
            given = request.headers.get("Content-Type")
            raise Problem(415, "Unsupported Media Type",
                          f"this operation takes {' or '.join(op.media_types)}, not "
                          f"{request.content_type if given else 'a body without a Content-Type'}",
                          kind="unsupported-media-type", headers={"Accept-Post": ", ".join(op.media_types)})
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

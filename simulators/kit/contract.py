"""Contract enforcement: the OpenAPI 3.1 YAML is the source of truth.

Validators are compiled once per operation with jsonschema-rs (about a
microsecond a call; openapi-core is far too slow for the hot path) and applied
to inbound requests, outbound responses and outbound webhooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import yaml

from caas_sim import catalogue

CONTRACTS_DIR = catalogue.CONTRACTS_DIR
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster
_METHODS = ("get", "put", "post", "delete", "patch")


@dataclass(slots=True)
class Violation:
    location: str  # body | path | query | header | response | webhook
    pointer: str
    message: str

    def to_dict(self) -> dict:
        return {"location": self.location, "pointer": self.pointer, "message": self.message}

    def __str__(self) -> str:
        return f"{self.location} {self.pointer or '/'}: {self.message}"


@dataclass(slots=True)
class Param:
    name: str
    location: str
    required: bool
    validator: Any
    kind: str | None  # JSON type used to coerce query/path strings


@dataclass(slots=True)
class Operation:
    id: str
    method: str
    path: str
    params: list[Param]
    body: Any = None  # validator, or None when the operation takes no JSON body
    body_required: bool = False
    responses: dict[str, Any] = field(default_factory=dict)  # status -> validator | None
    idempotent: bool = False  # declares an Idempotency-Key header

    def check_request(self, match_info: dict[str, str], query, headers, raw: bytes,
                      content_type: str) -> tuple[Any, list[Violation]]:
        violations = header_violations(headers)
        if violations:  # nothing reads a header that is not text: answered before anything does
            return None, violations
        for p in self.params:
            source = match_info if p.location == "path" else query if p.location == "query" else headers
            value = source.get(p.name)
            if value is None:
                if p.required:
                    violations.append(Violation(p.location, p.name, f"required {p.location} parameter is missing"))
                continue
            value = _coerce(value, p.kind)
            try:
                if not p.validator.is_valid(value):
                    violations.extend(Violation(p.location, p.name, e.message) for e in p.validator.iter_errors(value))
            except UnicodeEncodeError:  # undecodable bytes (as surrogates) in a path or query value
                violations.append(Violation(p.location, p.name, "value is not valid UTF-8 text"))
        body = None
        if self.body is None:
            return body, violations
        if not raw:
            if self.body_required:
                violations.append(Violation("body", "", "a JSON request body is required"))
            return body, violations
        if content_type and "json" not in content_type:
            violations.append(Violation("header", "Content-Type",
                                        f"expected application/json, got {content_type}"))
            return body, violations
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            violations.append(Violation("body", "", f"body is not valid JSON: {exc}"))
            return body, violations
        if not self.body.is_valid(body):
            violations.extend(_errors(self.body, body, "body"))
        return body, violations

    def check_response(self, status: int, body: Any) -> list[Violation]:
        key = str(status)
        if key not in self.responses:
            key = f"{key[0]}XX"
            if key not in self.responses:
                return [Violation("response", "", f"status {status} is not documented for {self.id}")]
        validator = self.responses[key]
        if validator is None or validator.is_valid(body):
            return []
        return _errors(validator, body, "response")


def header_violations(headers) -> list[Violation]:
    """A violation for each header whose value is not printable ASCII, read or not.

    aiohttp hands header bytes over decoded (UTF-8, undecodable bytes as lone surrogates):
    an ``.encode()`` or ``hmac.compare_digest`` of such a value raises (a 500), and nothing
    a simulator reads in a header (ids, keys, tokens, media types) is anything but ASCII.
    Checking every header covers the one someone reads tomorrow too."""
    if _is_text("".join(headers.values())):  # the common case, in one pass
        return []
    return [Violation("header", str(name), "value is not printable ASCII") for name, value in headers.items()
            if not _is_text(value)]


def _is_text(value: str) -> bool:
    # HTAB is the one control character a field value may hold (RFC 9110, 5.5).
    # (the copy without tabs only when there is something but printable text)
    return value.isascii() and (value.isprintable() or value.replace("\t", " ").isprintable())


class Contract:
    """One OpenAPI document, dereferenced, with compiled validators."""

    def __init__(self, source: str | Path | dict):
        if isinstance(source, dict):
            self.doc, self.name = source, source.get("info", {}).get("title", "contract")
        else:
            path = Path(source)
            if not path.is_absolute() and not path.exists():
                path = CONTRACTS_DIR / path
            self.doc, self.name = yaml.load(path.read_text(), Loader=_Loader), path.stem
        self.operations: dict[str, Operation] = {}
        self.webhooks: dict[str, Any] = {}
        for template, item in (self.doc.get("paths") or {}).items():
            shared = item.get("parameters", [])
            for method in _METHODS:
                if method in item:
                    op = self._compile(method.upper(), template, item[method], shared)
                    self.operations[op.id] = op
        for name, item in (self.doc.get("webhooks") or {}).items():
            post = self._resolve(item).get("post", {})
            schema = _json_schema(self._resolve(post.get("requestBody", {})))
            if schema is not None:
                self.webhooks[name] = _compile_schema(self._deref(schema))

    def check_webhook(self, name: str, payload: Any) -> list[Violation]:
        validator = self.webhooks.get(name)
        if validator is None:
            return [Violation("webhook", "", f"webhook {name!r} is not in contract {self.name}")]
        return [] if validator.is_valid(payload) else _errors(validator, payload, "webhook")

    def _compile(self, method: str, template: str, spec: dict, shared: list) -> Operation:
        params = []
        for raw in [*shared, *spec.get("parameters", [])]:
            p = self._resolve(raw)
            schema = self._deref(p.get("schema", {}))
            name = p["name"].lower() if p["in"] == "header" else p["name"]
            params.append(Param(name, p["in"], p.get("required", p["in"] == "path"),
                                _compile_schema(schema), _json_type(schema)))
        op = Operation(spec.get("operationId") or f"{method} {template}", method, template, params,
                       idempotent=any(p.name == "idempotency-key" for p in params))
        body = self._resolve(spec.get("requestBody")) if spec.get("requestBody") else None
        if body is not None:
            schema = _json_schema(body)
            if schema is not None:
                op.body = _compile_schema(self._deref(schema))
                op.body_required = body.get("required", False)
        for status, response in (spec.get("responses") or {}).items():
            schema = _json_schema(self._resolve(response))
            op.responses[str(status).upper()] = None if schema is None else _compile_schema(self._deref(schema))
        return op

    def _resolve(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = self._pointer(node["$ref"])
        return node

    def _pointer(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise ValueError(f"{self.name}: only local $refs are supported, got {ref!r}")
        node: Any = self.doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _deref(self, node: Any, depth: int = 0) -> Any:
        if depth > 64:
            raise ValueError(f"{self.name}: $ref nesting too deep (recursive schema?)")
        if isinstance(node, dict):
            if "$ref" in node:
                target = self._deref(self._pointer(node["$ref"]), depth + 1)
                siblings = {k: self._deref(v, depth + 1) for k, v in node.items() if k != "$ref"}
                return {**target, **siblings} if siblings else target
            return {k: self._deref(v, depth + 1) for k, v in node.items()}
        if isinstance(node, list):
            return [self._deref(v, depth + 1) for v in node]
        return node


@cache
def load(name: str) -> Contract:
    """The compiled contract of ``contracts/<name>``, parsed once per process (it never changes)."""
    return Contract(name)


def _json_schema(body_or_response: dict) -> dict | None:
    content = (body_or_response or {}).get("content") or {}
    for media, spec in content.items():
        if "json" in media:
            return spec.get("schema", {})
    return None


def _compile_schema(schema: dict) -> Any:
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True)


def _json_type(schema: dict) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind


def _coerce(value: str, kind: str | None) -> Any:
    """Query, path and header values arrive as text; the schema may say otherwise."""
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    return value


def _errors(validator: Any, instance: Any, location: str) -> list[Violation]:
    return [Violation(location, "/" + "/".join(str(p) for p in e.instance_path), e.message)
            for error in validator.iter_errors(instance) for e in _closest(error)]


def _closest(error: Any) -> list[Any]:
    """The errors that say what is wrong: for a oneOf or anyOf no branch of which matched,
    those of the branch the instance came closest to (its own, recursively), not "is not
    valid under any of the schemas", which names no field."""
    branches = getattr(error.kind, "context", None)
    if not branches or not all(branches):  # a branch matched: a oneOf's several matches are the error
        return [error]
    closest = max(branches, key=lambda branch: _closeness(branch, len(error.instance_path)))
    return [e for inner in closest for e in _closest(inner)]


def _closeness(branch: list[Any], depth: int) -> tuple[int, int]:
    # A branch whose errors are all deeper than the oneOf's instance is one whose shape the
    # instance has (a batch's `rules` array): what fails is inside it. Between equals, fewer errors.
    shallowest = min((len(e.instance_path) for e in branch), default=depth)
    return shallowest - depth, -len(branch)

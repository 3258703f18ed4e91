"""contracts/core.yaml read for the security tests: every operation with its access marker.

The tests are generated from this list, so an operation added to the contract is tested
(or fails for want of a marker) without anyone touching the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from caas_sim.simulators.kit.contract import CONTRACTS_DIR

METHODS = ("get", "put", "post", "delete", "patch")
DOC = yaml.safe_load((CONTRACTS_DIR / "core.yaml").read_text())


@dataclass(frozen=True)
class Op:
    op_id: str
    method: str
    path: str
    access: Any  # "webhook" | "admin" | {"roles": [...], "owner": ...} | None (missing)
    body_example: Any
    takes_body: bool = False

    @property
    def roles(self) -> list[str]:
        return list(self.access.get("roles", [])) if isinstance(self.access, dict) else []

    @property
    def owner(self) -> str | None:
        return self.access.get("owner") if isinstance(self.access, dict) else None

    def __str__(self) -> str:
        return self.op_id


def _resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = DOC
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def _example(op: dict) -> Any:
    media = _resolve(op.get("requestBody", {})).get("content", {}).get("application/json")
    if not media:
        return None
    if "example" in media:
        return media["example"]
    examples = media.get("examples") or {}
    return _resolve(next(iter(examples.values())))["value"] if examples else None


def operations() -> list[Op]:
    return [Op(op["operationId"], method.upper(), path, op.get("x-caas-access"), _example(op),
               "requestBody" in op and _resolve(op["requestBody"]).get("required", False))
            for path, item in DOC["paths"].items() for method, op in item.items() if method in METHODS]


def of_kind(kind: str) -> list[Op]:
    if kind == "customer":
        return [op for op in operations() if isinstance(op.access, dict)]
    return [op for op in operations() if op.access == kind]

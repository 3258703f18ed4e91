"""The webhook faults every simulator offers, and how they become delivery hooks.

A simulator registers them under its own names (the IoT API calls its webhooks
"callbacks"), then asks for the hooks of each webhook it sends: the rules that
match its entities decide whether it is lost, duplicated, delayed or reordered.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .faults import FaultEngine, NoParams
from .webhooks import DeliveryHooks


class CopiesParams(NoParams):
    copies: int = Field(default=1, ge=1, le=10)


class DelayParams(NoParams):
    seconds: float = Field(default=300, ge=0)


class LostParams(NoParams):
    redeliver_after: float | None = Field(default=None, ge=0)  # seconds; never redelivered when absent


KINDS = {
    "lost": ("never sent, or sent again `redeliver_after` seconds later with the same webhook-id", LostParams),
    "duplicated": ("delivered `copies` more times with the same webhook-id", CopiesParams),
    "delayed": ("leaves `seconds` late", DelayParams),
    "reordered": ("held back until the next one about the same entity overtakes it", NoParams),
}


def register_delivery_faults(faults: FaultEngine, names: dict[str, str], what: str = "A webhook") -> None:
    """``names``: kind (lost, duplicated, delayed, reordered) -> the fault's name in this simulator."""
    for kind, name in names.items():
        description, params = KINDS[kind]
        faults.register(name, f"{what} is {description}" if kind != "delayed" else f"{what} {description}", params)


def delivery_hooks(faults: FaultEngine, names: dict[str, str], entities: dict[str, Any],
                   correlation_id: str | None = None, *, reorder_by: str | None = None) -> DeliveryHooks:
    """The hooks of one webhook about ``entities``: every matching rule applies (and is journaled)."""
    hooks = DeliveryHooks(reorder_by=reorder_by)
    for kind, name in names.items():
        rule = faults.take(name, entities=entities, correlation_id=correlation_id)
        if rule is None:
            continue
        hooks.rule_id = rule.id
        if kind == "lost":
            hooks.lost, hooks.redeliver_after = True, rule.params.get("redeliver_after")
        elif kind == "duplicated":
            hooks.duplicates = rule.params["copies"]
        elif kind == "delayed":
            hooks.delay = rule.params["seconds"]
        else:
            hooks.reorder = True
    return hooks

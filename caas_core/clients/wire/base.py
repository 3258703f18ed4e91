"""What every wire model shares: the strictness of JSON, tolerance of unknown fields, and
how a body that does not parse is reported.

Strict: a JSON body's types are taken as they are (``"42"`` is no integer, ``1.0`` no
count of cents, ``1`` no boolean), as the contracts' JSON Schemas say. Unknown fields are
ignored: a peer adding a field to its answers breaks nothing. Instants the core computes
with are aware datetimes; dates and instants it only records or passes on stay the ISO
text they arrived as.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_core import PydanticCustomError


class Wire(BaseModel):
    """A JSON object one of the external systems sends (an answer or a webhook body)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


def _text(value: Any) -> Any:
    if isinstance(value, datetime):  # already parsed (a model built in code)
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("instant_type", "an instant is an ISO 8601 string")
    return value


#: An ISO 8601 instant with its offset (the contracts' ``format: date-time``), as a datetime.
Instant = Annotated[AwareDatetime, Field(strict=False), BeforeValidator(_text)]

M = TypeVar("M", bound=Wire)


class Unusable(ValueError):
    """A signed webhook body the core cannot act on: not what its contract describes, or of a
    kind the core does not know. It is acknowledged and recorded with ``outcome``, never
    processed (redelivering it would not help)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def describe(error: ValidationError, limit: int = 3) -> str:
    """A validation error on one line: where and what, for logs, job errors and the inbox."""
    found = error.errors(include_url=False, include_input=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in found[:limit]]
    return "; ".join(parts) + (f" (and {len(found) - limit} more)" if len(found) > limit else "")


def read(model: type[M], body: Any, name: str) -> M:
    """A webhook ``body`` as ``model``; ``Unusable("malformed <name>: ...")`` if it is not one."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise Unusable(f"malformed {name}: {describe(exc)}") from None


def read_tagged(body: Any, tag: str, models: Mapping[str, type[Wire]]) -> Wire:
    """A webhook ``body`` whose ``tag`` field names its kind, as the model of that kind;
    ``Unusable`` for a kind the core does not know (``ignored <kind>``) or a malformed body."""
    kind = body.get(tag) if isinstance(body, Mapping) else None
    if not isinstance(kind, str):
        raise Unusable(f"malformed: no {tag}")
    model = models.get(kind)
    if model is None:
        raise Unusable(f"ignored {kind}")
    return read(model, body, kind)

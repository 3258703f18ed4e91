"""A request's entities: what fault selectors can name of it, and what the journal files it under.

Working them out walks the body in Python (a registry submission's twenty-odd fields were an
eighth of the Python its simulator executes per request), and most journal entries are never
read.
So a request's journal entry keeps where its entities come from (its path parameters and
its body, embedded as the JSON it arrived as: orjson copies it without parsing it again)
and the journal works them out when the entry is read. A fault rule to match, or a
handler that asks, works them out on the spot.
"""

from __future__ import annotations

from typing import Any

import orjson

#: The journal field that holds an entry's entity source until the entry is read.
ENTITY_SOURCE = "_entitySource"
#: Bodies larger than this have their entities worked out at once: the journal keeps a few
#: hundred bytes of entities, not a body of up to a megabyte.
MAX_DEFERRED_BODY = 2048


def entities(path: dict[str, str], body: Any) -> dict[str, str]:
    """Path parameters, then the body's short strings, top level first, then one level down
    (``vehicle.vin`` answers to ``vin``)."""
    found = dict(path)
    if type(body) is dict:  # exact types: this runs on every request a fault rule may match
        nested = None
        for key, value in body.items():
            kind = type(value)
            if kind is str:
                if len(value) <= 128 and key not in found:
                    found[key] = value
            elif kind is dict:
                nested = [value] if nested is None else [*nested, value]
        for inner in nested or ():
            for key, value in inner.items():
                if type(value) is str and len(value) <= 128 and key not in found:
                    found[key] = value
    return found


def entity_source(path: dict[str, str], raw: bytes, body: Any) -> list:
    """What ``resolve`` works a request's entities out of: its path parameters and ``raw``,
    the JSON text ``body`` was parsed from."""
    if body is None:
        return [path, None]
    if len(raw) > MAX_DEFERRED_BODY:
        return [path, entities(path, body)]  # works out to itself
    return [path, orjson.Fragment(raw)]


def resolve(fields: dict) -> dict:
    """A journal entry's fields with its entity source replaced by its entities, in place
    (none when there are none)."""
    if ENTITY_SOURCE not in fields:
        return fields
    resolved = {}
    for key, value in fields.items():
        if key != ENTITY_SOURCE:
            resolved[key] = value
        elif found := entities(*value):
            resolved["entities"] = found
    return resolved

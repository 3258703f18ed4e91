"""``${name}`` substitution and the ``match`` language of expectations.

``match`` compares an API's answer with what a scenario expects: a mapping
matches when each of its keys matches (other keys are ignored), a list or a
scalar must be equal, and a mapping with one ``$`` key is an operator:
``$in``, ``$ne``, ``$matches`` (a regular expression found in a string), ``$gt``, ``$gte``, ``$lt``, ``$lte``, ``$exists``,
``$len`` (a number or a match), ``$contains`` (some item matches),
``$every`` (every item matches), ``$none`` (no item matches).
"""

from __future__ import annotations

import re
from typing import Any

_VAR = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")


class MissingValue(KeyError):
    def __str__(self) -> str:
        return f"no value named ${{{self.args[0]}}} (saved values and vins.<iot|vss>.<key> are known)"


def lookup(values: dict[str, Any], name: str) -> Any:
    current: Any = values
    for part in name.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise MissingValue(name)
    return current


def resolve(value: Any, values: dict[str, Any]) -> Any:
    """``value`` with every ``${name}`` replaced; a string that is one reference keeps the value's type."""
    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        if whole:
            return lookup(values, whole.group(1))
        return _VAR.sub(lambda m: str(lookup(values, m.group(1))), value)
    if isinstance(value, dict):
        return {resolve(k, values): resolve(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, values) for v in value]
    return value


def references(value: Any) -> set[str]:
    """The names a value refers to (to fetch magic VINs only when a scenario uses them)."""
    if isinstance(value, str):
        return set(_VAR.findall(value))
    if isinstance(value, dict):
        return set().union(*(references(k) | references(v) for k, v in value.items())) if value else set()
    if isinstance(value, list):
        return set().union(*(references(v) for v in value)) if value else set()
    return set()


def dig(body: Any, path: str) -> Any:
    """A dotted path into a JSON body: ``purchaseId``, ``purchases.0.status``."""
    return lookup(body, path) if path else body


_MISSING = object()


def mismatches(actual: Any, expected: Any, at: str = "") -> list[str]:
    """What differs, one line each (empty: it matches)."""
    if isinstance(expected, dict) and len(expected) == 1 and next(iter(expected)).startswith("$"):
        return _operator(actual, *next(iter(expected.items())), at)
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{at or 'body'}: expected an object, got {_show(actual)}"]
        out = []
        for key, want in expected.items():
            got = actual.get(key, _MISSING)
            if got is _MISSING and not (isinstance(want, dict) and want.get("$exists") is False):
                out.append(f"{at}{key}: missing (expected {_show(want)})")
                continue
            out.extend(mismatches(None if got is _MISSING else got, want, f"{at}{key}."))
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{at.rstrip('.') or 'body'}: expected {len(expected)} items {_show(expected)}, got {_show(actual)}"]
        return [m for i, (a, e) in enumerate(zip(actual, expected)) for m in mismatches(a, e, f"{at}{i}.")]
    if actual != expected:
        return [f"{at.rstrip('.') or 'body'}: expected {_show(expected)}, got {_show(actual)}"]
    return []


def _operator(actual: Any, op: str, arg: Any, at: str) -> list[str]:
    where = at.rstrip(".") or "body"
    ok: bool
    if op == "$in":
        ok = actual in arg
    elif op == "$ne":
        ok = actual != arg
    elif op in ("$gt", "$gte", "$lt", "$lte"):
        try:
            ok = {"$gt": actual > arg, "$gte": actual >= arg, "$lt": actual < arg, "$lte": actual <= arg}[op]
        except TypeError:
            ok = False
    elif op == "$matches":
        ok = isinstance(actual, str) and re.search(arg, actual) is not None
    elif op == "$exists":
        ok = (actual is not None) == bool(arg)
    elif op == "$len":
        if not isinstance(actual, list | dict | str):
            return [f"{where}: expected something with a length, got {_show(actual)}"]
        inner = mismatches(len(actual), arg, at)
        return [f"{where}: length {len(actual)} ({'; '.join(inner)})"] if inner else []
    elif op in ("$contains", "$every", "$none"):
        if not isinstance(actual, list):
            return [f"{where}: expected a list, got {_show(actual)}"]
        hits = [not mismatches(item, arg) for item in actual]
        if op == "$every":
            bad = [i for i, hit in enumerate(hits) if not hit]
            return [f"{where}[{i}]: {'; '.join(mismatches(actual[i], arg))}" for i in bad[:3]]
        ok = any(hits) if op == "$contains" else not any(hits)
    else:
        return [f"{where}: unknown operator {op}"]
    return [] if ok else [f"{where}: expected {op} {_show(arg)}, got {_show(actual)}"]


def _show(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."

"""A column equal to one of a list bound at execution, per dialect.

SQLAlchemy's expanding ``IN`` renders one placeholder per value at each execution: on
PostgreSQL every list length is another statement, prepared again on each connection and
planned afresh on its first executions (a batch of 1 to 100 jobs cycles through a hundred
of them). ``= ANY`` of one array parameter is one statement and one cached plan whatever
the length. SQLite has no arrays: it keeps the ``IN``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ARRAY, ColumnElement, any_, bindparam


def one_of(column: Any, name: str) -> dict[str, ColumnElement[bool]]:
    """``column`` in the list bound as ``name``, by dialect name (``postgresql``, ``sqlite``)."""
    return {"postgresql": column == any_(bindparam(name, type_=ARRAY(column.type))),
            "sqlite": column.in_(bindparam(name, expanding=True))}

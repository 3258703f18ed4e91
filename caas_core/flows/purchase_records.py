"""The purchase row: every flow reads and writes it through here (as sales through
``sale_records``). Statements are built once: a statement's construction costs more CPU
than its run (see store/jobs.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update

from ..domain.purchase import ENDED
from ..store.schema import purchases

_LOAD = select(purchases).where(purchases.c.id == bindparam("purchase_id"))
# FOR UPDATE locks the row on PostgreSQL; SQLite renders none, its write transactions being
# serialized whole (store/db.py).
_LOAD_LOCKED = _LOAD.with_for_update()
_CHANGE = update(purchases).where(purchases.c.id == bindparam("b_purchase_id"))


async def load(conn, purchase_id: str, *, lock: bool = False):
    """The purchase's row (locked for the transaction with ``lock``), or None."""
    return (await conn.execute(_LOAD_LOCKED if lock else _LOAD, {"purchase_id": purchase_id})).mappings().first()


async def change(conn, purchase_id: str, **values: Any) -> None:
    await conn.execute(_CHANGE, {**values, "b_purchase_id": purchase_id})


async def of_customer(conn, customer_id: str) -> list:
    return (await conn.execute(select(purchases).where(purchases.c.customer_id == customer_id)
                               .order_by(purchases.c.created_at, purchases.c.id))).mappings().all()


async def of_vehicle(conn, vin: str) -> list:
    return (await conn.execute(select(purchases).where(purchases.c.vin == vin)
                               .order_by(purchases.c.created_at))).mappings().all()


# read by every purchase; the ended states as inequalities, not a NOT IN list (re-rendered at
# every execution)
_LIVE_OF_VEHICLE = (select(purchases.c.id, purchases.c.service_id, purchases.c.status)
                    .where(purchases.c.vin == bindparam("vin"), *(purchases.c.status != state.value for state in ENDED))
                    .order_by(purchases.c.created_at, purchases.c.id))


async def live_of_vehicle(conn, vin: str) -> list:
    """The vehicle's purchases that hold their service, or are on the way to (not ended)."""
    return (await conn.execute(_LIVE_OF_VEHICLE, {"vin": vin})).mappings().all()

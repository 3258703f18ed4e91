"""What every sale flow writes: the sale row, its file (expediente) and its notices."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update

from ..domain.errors import NotFound
from ..store import outbox
from ..store.schema import sale_events, sales, system_state

#: Channels of a customer notice about the vehicle (the app and e-mail).
CUSTOMER_CHANNELS = ("email", "push")
#: The file's line for each change of the sale's status.
STATUS_CHANGED = "STATUS_CHANGED"


# built once: every read of a sale (each status poll of a journey) runs one
_LOAD = select(sales).where(sales.c.id == bindparam("sale_id"))
_LOAD_LOCKED = _LOAD.with_for_update()


async def load(conn, sale_id: str, *, lock: bool = False):
    stmt = _LOAD_LOCKED if lock and conn.dialect.name == "postgresql" else _LOAD
    row = (await conn.execute(stmt, {"sale_id": sale_id})).mappings().first()
    if row is None:
        raise NotFound("Unknown sale", f"no sale {sale_id}")
    return row


async def by_order(conn, order_id: str):
    stmt = select(sales).where(sales.c.order_id == order_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).mappings().first()


async def change(conn, sale_id: str, now: float, **values: Any) -> None:
    await conn.execute(update(sales).where(sales.c.id == sale_id).values(updated_at=now, **values))
    if "status" in values:  # the file keeps every status the sale went through (the audit reads it)
        await record(conn, sale_id, STATUS_CHANGED, {"status": values["status"]}, now)


async def record(conn, sale_id: str, kind: str, detail: dict, now: float) -> None:
    """One line of the customer's file."""
    await conn.execute(sale_events.insert().values(sale_id=sale_id, at=now, kind=kind, detail=detail))


async def tell_customer(conn, sale, template: str, now: float, **data: Any) -> None:
    payload = {"saleId": sale["id"], "model": sale["model"], **({"vin": sale["vin"]} if sale["vin"] else {}), **data}
    for channel in CUSTOMER_CHANNELS:
        await outbox.notify(conn, sale["customer_id"], channel, template, payload, now)
    await record(conn, sale["id"], "NOTIFIED_CUSTOMER", {"template": template, **data}, now)


async def alert_dealership(conn, dealership_id: str, template: str, now: float, *, sale_id: str | None = None,
                           **data: Any) -> None:
    """A message to the dealership's staff (read at GET /dealerships/{id}/notifications)."""
    payload = {**({"saleId": sale_id} if sale_id else {}), **data}
    await outbox.notify(conn, dealership_id, "email", template, payload, now)
    if sale_id:
        await record(conn, sale_id, "ALERTED_DEALERSHIP", {"template": template, **data}, now)


async def get_state(conn, key: str) -> dict | None:
    return await conn.scalar(select(system_state.c.value).where(system_state.c.key == key))


async def set_state(conn, key: str, value: dict | None, now: float) -> None:
    await conn.execute(system_state.delete().where(system_state.c.key == key))
    if value is not None:
        await conn.execute(system_state.insert().values(key=key, value=value, updated_at=now))

"""Which customer holds which vehicle, checked before anything is charged.

The core knows the holder of a vehicle it sold from the delivered sale (``flows.manufacturing``
writes ``vehicles``). The fleet that existed before the core has no ownership registry the
core can read (the API IoT knows vehicles, not customers), so the first purchase for a vehicle
the API IoT knows links it to that customer, as the mobile app's "link my car" step does; from
then on it is theirs, and every other customer gets 404 (as for a vehicle that does not exist:
whether someone else holds it is not the asker's business). The API IoT down for a vehicle the
core has never seen does not block the sale (specification: API IoT down, "queue OTA requests,
retry later"): the vehicle is linked unverified and the risk recorded in the audit log; if it
does not exist, its activation fails and the customer is refunded in full.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..clients.http import Rejected, Unavailable
from ..domain.errors import NotFound
from ..store import outbox
from ..store.schema import vehicles
from .core import Core

_LINK = {dialect: insert(vehicles).on_conflict_do_nothing(index_elements=["vin"])
         for dialect, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))}


async def holder(core: Core, vin: str) -> str | None:
    async with core.db.transaction(readonly=True) as conn:
        return await conn.scalar(select(vehicles.c.customer_id).where(vehicles.c.vin == vin))


async def require_holder(core: Core, customer_id: str, vin: str, correlation_id: str) -> None:
    """Raise 404 unless ``customer_id`` holds ``vin`` (linking a fleet vehicle nobody holds)."""
    held_by = await holder(core, vin)
    if held_by is None:
        model, unverified = "unknown", None
        try:
            model = (await core.iot.vehicle_status(vin, correlation_id=correlation_id)).model
        except Unavailable as exc:
            unverified = str(exc)
        except Rejected:  # 404 (no such vehicle) or 400 (not a VIN the fleet could have)
            raise _unknown(customer_id, vin) from None
        async with core.db.transaction() as conn:  # the first to link it wins; a racing second sees the winner
            linked = (await conn.execute(_LINK[conn.dialect.name], {
                "vin": vin, "customer_id": customer_id, "model": model})).rowcount == 1
            if linked and unverified:
                await outbox.record_decision(conn, "vehicle", vin, "IOT_UNAVAILABLE_LINKED_UNVERIFIED",
                                             {"customerId": customer_id, "reason": unverified}, core.clock.now())
            held_by = customer_id if linked else await conn.scalar(
                select(vehicles.c.customer_id).where(vehicles.c.vin == vin))
    if held_by != customer_id:
        raise _unknown(customer_id, vin)


def _unknown(customer_id: str, vin: str) -> NotFound:
    return NotFound("Unknown vehicle", f"customer {customer_id} has no vehicle {vin}", kind="unknown-vehicle")


async def status_or_error(core: Core, vin: str, correlation_id: str) -> tuple[dict | None, str | None]:
    """The vehicle's reported status (``GET /vehicles/{vin}/status``, parsed: as the mapping
    ``domain.support`` reads), or why it could not be read."""
    try:
        return (await core.iot.vehicle_status(vin, correlation_id=correlation_id)).model_dump(), None
    except (Unavailable, Rejected) as exc:
        return None, str(exc)

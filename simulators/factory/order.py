"""A factory order as the simulator keeps it, and the dates it shows.

An order is kept as bytes (``Order.pack``: its plain values, marshalled), which the
garbage collector never walks: kept as objects, an order was an ``Order``, its steps,
its timer and two lists, and at ~17,000 orders every full collection walked them for
26-91 ms, the p99 of a request. The model unpacks an order to read or change it and packs
it back once it is done (``FactoryModel.orders`` is a ``RecordStore`` doing both).
"""

from __future__ import annotations

import functools
from dataclasses import astuple, dataclass, field, fields
from datetime import date
from typing import Any

from ..kit.clock import to_datetime
from ..kit.untracked import flag_of, flagged, flagged_values
from . import catalogue
from .shipping import Checkpoint
from .timeline import DAY

STATUSES = ("ORDER_PLACED", "PRODUCTION_SCHEDULED", "PRODUCTION_IN_PROGRESS", "QUALITY_CONTROL",
            "READY_FOR_SHIPMENT", "IN_TRANSIT", "ARRIVED_AT_DEALERSHIP")


@dataclass(slots=True)
class Step:
    """Something due to happen to an order at ``when``."""
    when: float
    kind: str  # status | milestone | checkpoint | qc_failed | delay | tracking
    arg: Any = None


@dataclass(slots=True)
class Order:
    id: str
    reference: str
    model: catalogue.Model
    options: tuple[str, ...]
    customer: dict
    dealership: dict
    created: float
    correlation_id: str | None
    magic: str | None
    status: str | None = None
    updated: float = 0.0
    sequence: int = 0
    history: list[dict] = field(default_factory=list)
    vin: str | None = None
    location: str = "PLANT"  # PLANT | IN_TRANSIT | DEALERSHIP | OUT_FOR_DELIVERY | RETURNING_TO_DEALERSHIP | CUSTOMER
    ready_at: float = 0.0    # estimated (or actual, once reached) READY_FOR_SHIPMENT time
    arrival_at: float = 0.0  # estimated (or actual) ARRIVED_AT_DEALERSHIP time
    stage_end: float = 0.0   # when the current stage is planned to end
    qc_rounds: int = 0
    qc_failures: int = 0
    qc_failures_left: int | None = None  # decided when QC is first entered
    pending_delay: tuple[int, str] | None = None
    tracking: dict | None = None
    # in time order; the clock holds one timer for the first (none once they are done)
    steps: list[Step] = field(default_factory=list)

    @property
    def entities(self) -> dict[str, str]:
        return {"orderId": self.id, "reference": self.reference, "dealershipId": self.dealership["id"],
                "model": self.model.code}

    def pack(self) -> bytes:
        values = [getattr(self, name) for name in _FIELDS]
        values[_MODEL] = self.model.code
        values[STEPS] = [(s.when, s.kind, astuple(s.arg) if s.kind == "tracking" else s.arg) for s in self.steps]
        return flagged(bool(self.steps), values)  # the flag: a stage is ahead

    @classmethod
    def unpack(cls, packed: bytes) -> Order:
        values = values_of(packed)
        values[_MODEL] = catalogue.MODELS[values[_MODEL]]
        values[STEPS] = [Step(when, kind, Checkpoint(*arg) if kind == "tracking" else arg)
                         for when, kind, arg in values[STEPS]]
        return cls(*values)


_FIELDS = tuple(f.name for f in fields(Order))
# Positions in the packed values of what is read without building the order.
_MODEL, REFERENCE = (_FIELDS.index(name) for name in ("model", "reference"))
STEPS = _FIELDS.index("steps")
on_its_way, values_of = flag_of, flagged_values  # of a packed order, without building it


#: 9999-12-31 as days since the epoch: later days are left to datetime (and its error).
_LAST_DAY = date(9999, 12, 31).toordinal() - date(1970, 1, 1).toordinal()
_EPOCH = date(1970, 1, 1).toordinal()


def day_of(ts: float) -> str:
    """The UTC date of ``ts`` (YYYY-MM-DD): what ``to_datetime(ts).date().isoformat()`` says,
    from the day number. An order shows a few dates on every answer and notification, and
    the day's text is cached where a datetime costs ~0.7 µs each time."""
    day, into = divmod(ts, DAY)
    # datetime rounds to the microsecond: right before midnight it may be the next day.
    if into >= DAY - 0.001 or not 0 <= day <= _LAST_DAY:
        return to_datetime(ts).date().isoformat()
    return _day_text(int(day))


@functools.lru_cache(maxsize=1024)  # some three years of days
def _day_text(day: int) -> str:
    return date.fromordinal(_EPOCH + day).isoformat()

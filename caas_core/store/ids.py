"""The ids the core hands out: random, or seeded in a world on a virtual clock.

By default ids are random (uuid4, and for outbox rows a wall-clock prefix that keeps them
in write order), so that no two cores, processes or restarts ever hand out the same one.

A world on a virtual clock given an ``id_seed`` (``CoreSettings.id_seed``; the scenario
stack and ``caas-sim up`` pass their ``--seed``) draws them from ``random.Random`` seeded
with the seed and a *boot number*: a counter in the database (``system_state``), taken
once per start of a core and carried over a reset. Two runs of a scenario on fresh
databases take boot 1 and hand out the same ids (a report names them: sale ids in paths);
a core restarted on the same database, or a second process on it, takes another boot and
so another stream, which repeats an earlier id no more than two uuid4s collide. Anything
else (a real or scaled clock, no seed) keeps the random ids.

Outbox rows (notifications, tickets, audit entries) are written where only a connection
is at hand: the source registered for its engine (``register``) serves them.
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
import weakref

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import system_state

BOOTS_KEY = "id_boots"


class IdSource:
    def __init__(self, seed: int | None = None, boot: int = 0):
        self.boot = boot
        self._rng = random.Random(f"{seed}:{boot}") if seed is not None else None
        self._order = itertools.count(1)

    @property
    def seeded(self) -> bool:
        return self._rng is not None

    def new(self, prefix: str) -> str:
        """``<prefix>_<20 hex>``: purchases, sales, payments, correlation ids."""
        if self._rng is None:
            return f"{prefix}_{uuid.uuid4().hex[:20]}"
        return f"{prefix}_{self._rng.getrandbits(80):020x}"

    def ordered(self, prefix: str) -> str:
        """``<prefix>_<16 hex of order><12 hex>``: rows written at one clock instant list in
        the order they were written (readers sort by created_at, then id)."""
        if self._rng is None:
            return f"{prefix}_{time.time_ns():016x}{uuid.uuid4().hex[:12]}"
        # boot then count: a later boot's rows sort after an earlier one's
        return f"{prefix}_{self.boot:06x}{next(self._order):010x}{self._rng.getrandbits(48):012x}"

    @classmethod
    async def open(cls, db, *, seed: int | None, virtual: bool) -> IdSource:
        """The source of a core on ``db`` (a ``store.db.Database``), registered for its outbox."""
        source = cls(seed, await take_boot(db)) if seed is not None and virtual else cls()
        register(db.engine.sync_engine, source)
        return source

    async def carry_over(self, db) -> None:
        """After a reset emptied ``db``: the boots taken so far stay taken."""
        if self.seeded:
            await _boots(db, lambda last: max(last, self.boot))


async def take_boot(db) -> int:
    """The next boot number of ``db``: two processes starting together get two."""
    return await _boots(db, lambda last: last + 1)


async def _boots(db, change) -> int:
    """Set the boot counter to ``change(its value)`` in one transaction; return the new value."""
    where = system_state.c.key == BOOTS_KEY
    for _ in range(3):
        try:
            async with db.transaction() as conn:
                # (an object: SQLite would read a bare number back as a number, not JSON text)
                last = await conn.scalar(select(system_state.c.value).where(where).with_for_update())
                value = change(last["boots"] if last else 0)
                if last is None:
                    await conn.execute(system_state.insert().values(key=BOOTS_KEY, value={"boots": value},
                                                                    updated_at=0.0))
                else:
                    await conn.execute(system_state.update().where(where).values(value={"boots": value}))
            return value
        except IntegrityError:
            continue  # another process wrote the first value meanwhile: read it
    raise RuntimeError("cannot take a boot number (the id counter keeps conflicting)")


_SOURCES: weakref.WeakKeyDictionary[Engine, IdSource] = weakref.WeakKeyDictionary()
_RANDOM = IdSource()


def register(engine: Engine, source: IdSource) -> None:
    _SOURCES[engine] = source


def of(conn: AsyncConnection) -> IdSource:
    """The source of the core writing through ``conn`` (random when none registered)."""
    return _SOURCES.get(conn.sync_engine, _RANDOM)

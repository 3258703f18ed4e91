"""What every flow works with: settings, clock, database, catalogue, upstream clients."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ..clients.upstreams import (
    FactoryClient,
    IotClient,
    PaymentsClient,
    RegistryClient,
    VssClient,
)
from ..clock import CoreClock
from ..domain.catalogue import Catalogue
from ..domain.ota_policy import RetryPolicy
from ..settings import CoreSettings
from ..store.db import Database


@dataclass
class Core:
    settings: CoreSettings
    clock: CoreClock
    db: Database
    catalogue: Catalogue
    policy: RetryPolicy
    iot: IotClient
    vss: VssClient
    payments: PaymentsClient
    factory: FactoryClient
    registries: dict[str, RegistryClient]  # by owner country: ES, FR, DE, GB
    kick: object = None  # set by the app: wakes the job runner after an enqueue for now
    #: Requests being handled: with the clock's parked calls, what tells a world in virtual
    #: time whether the core is still working on something.
    in_flight: int = 0

    @staticmethod
    def new_id(prefix: str) -> str:
        # Random, not seeded: a restarted core on the same database must never reuse an id.
        return f"{prefix}_{uuid.uuid4().hex[:20]}"

    def wake(self) -> None:
        if callable(self.kick):
            self.kick()

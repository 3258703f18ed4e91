"""What every flow works with: settings, clock, database, catalogue, upstream clients (built by
``caas_core.compose``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

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
from ..metrics import CoreMetrics
from ..settings import CoreSettings
from ..store.db import Database
from ..store.ids import IdSource


class Backlog(Protocol):
    """The job queue's depth as ingestion sees it (``flows.backlog.Backlog``)."""

    def check(self) -> None: ...

    def add(self, count: int) -> None: ...


class WebhookBatches(Protocol):
    """Webhook arrivals committed in shared batches (``flows.webhooks.GroupCommit``)."""

    async def submit(self, source: str, webhook_id: str, payload: str, correlation_id: str | None, *,
                     unusable: str | None = None) -> bool: ...


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
    #: Wakes the job runner after an enqueue for now (its ``kick``; None: no runner in this process).
    kick: Callable[[], None] | None = None
    #: Webhook arrivals committed in shared batches (``flows.webhooks``); made on first use.
    webhook_batches: WebhookBatches | None = None
    #: Requests being handled: with the clock's parked calls, what tells a world in virtual
    #: time whether the core is still working on something.
    in_flight: int = 0
    #: Random by default; seeded in a world on a virtual clock (``store.ids``), never reused.
    ids: IdSource = field(default_factory=IdSource)
    #: What ``GET /metrics`` shows (the composition root makes it; None in bare test cores).
    metrics: CoreMetrics | None = None

    def new_id(self, prefix: str) -> str:
        return self.ids.new(prefix)

    #: Refuses webhooks while the job queue is too deep (``flows.backlog``; None: no bound).
    backlog: Backlog | None = None

    def wake(self) -> None:
        if self.kick is not None:
            self.kick()

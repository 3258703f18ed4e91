"""What every simulator is configured with; simulator-specific knobs go in ``options``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clock import Clock
from .contract import Contract
from .service import Service
from .webhooks import DEFAULT_SECRET


@dataclass
class SimConfig:
    seed: int = 0
    clock: Clock | None = None  # shared by the stack; a virtual clock of its own otherwise
    journal_capacity: int = 10_000
    journal_path: str | Path | None = None
    admin_token: str | None = None
    fault_profile: str | Path | None = None
    webhook_url: str | None = None  # subscribe every webhook of the service to this URL
    webhook_secret: str = DEFAULT_SECRET
    #: webhook-ids unique to this process, not only to the seed (``WebhookDispatcher``): for
    #: simulators that talk to a core they did not start afresh
    unique_webhook_ids: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def service(self, name: str, contract: str | Contract) -> Service:
        return Service(name, contract, clock=self.clock, seed=self.seed, journal_capacity=self.journal_capacity,
                       journal_path=self.journal_path, admin_token=self.admin_token,
                       unique_webhook_ids=self.unique_webhook_ids)

    def finish(self, service: Service) -> None:
        """Apply what needs the simulator's domain faults registered first."""
        if self.webhook_url:
            service.webhooks.subscribe("*", self.webhook_url, self.webhook_secret)
        if self.fault_profile:
            service.faults.load_profile(self.fault_profile)

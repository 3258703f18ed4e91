"""The composition root: the one place that builds a core from its settings.

It wires the upstream clients (one per service of the catalogue the core calls), the
store, the flows' shared state (``flows.core.Core``) and the one table of job kinds and
the flows that run them. The HTTP layer (``api.app``) asks it for a running core and
serves it; tests and tools that want a core without HTTP can do the same.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from caas_sim import catalogue as services

from .clients.http import JsonClient
from .clients.upstreams import (
    FactoryClient,
    IotClient,
    PaymentsClient,
    RegistryClient,
    VssClient,
)
from .clock import CoreClock
from .domain.catalogue import Catalogue
from .domain.ota_policy import RetryPolicy
from .domain.registration import COUNTRIES
from .flows import (
    backlog,
    billing,
    delivery,
    kinds,
    lifecycle,
    manufacturing,
    ota,
    pruning,
    purchases,
    refunding,
    registration,
    sale_payments,
    sales,
    settlement,
    webhooks,
)
from .flows.core import Core
from .flows.runner import Handler, JobContext, JobRunner
from .metrics import CoreMetrics
from .settings import CoreSettings
from .store import jobs
from .store.db import Database
from .store.ids import IdSource

#: A flow's job handler: the core, the job, the runner's context.
FlowJob = Callable[[Core, jobs.Job, JobContext], Awaitable[None]]

#: Every kind of durable job, and the flow that runs it.
JOBS: dict[str, FlowJob] = {
    kinds.ACTIVATE: ota.activate_job,
    ota.OUTCOME: ota.outcome_job,
    ota.TIMEOUT: ota.timeout_job,
    ota.RECONCILE: ota.reconcile_job,
    ota.GIVE_UP: ota.give_up,
    kinds.CHARGE: purchases.charge_job,
    kinds.EXPIRE: lifecycle.expire,
    kinds.DEACTIVATE: lifecycle.deactivate,
    kinds.DEACTIVATE_TIMEOUT: lifecycle.deactivation_timeout,
    kinds.DEACTIVATE_GIVE_UP: lifecycle.deactivation_give_up,
    settlement.PAYMENT_EVENT: settlement.on_payment_event,
    sale_payments.RECOVER: sale_payments.recover_job,
    sales.PLACE_ORDER: sales.place_order_job,
    sales.PROBE: sales.probe_job,
    manufacturing.FACTORY_EVENT: manufacturing.on_factory_event,
    registration.SUBMIT: registration.submit,
    registration.POLL: registration.poll,
    registration.SUBMIT_INFO: registration.submit_info,
    webhooks.REGISTRY_EVENT: registration.on_registry_event,
    registration.DELIVER: delivery.schedule,
    billing.CHARGE: billing.charge,
    refunding.REFUND: refunding.run,
    pruning.PRUNE: pruning.prune,
}
#: The kinds whose jobs may run many in one transaction (database work only), and how.
BATCHES: dict[str, Callable[[Core, list[jobs.Job], JobContext], Awaitable[None]]] = {
    ota.OUTCOME: ota.outcome_batch,
}
#: Jobs that keep the house (they alone never make a world busy).
HOUSEKEEPING = frozenset({pruning.PRUNE})


def handlers(core: Core) -> dict[str, Handler]:
    """The job table bound to one core, as the runner calls it."""
    return {kind: functools.partial(flow, core) for kind, flow in JOBS.items()}


def build_core(settings: CoreSettings, clock: CoreClock, db: Database, session: aiohttp.ClientSession) -> Core:
    """The flows' shared state, its clients on ``session``."""
    up = settings.upstreams
    metrics = CoreMetrics(clock.now)

    def client(name: str, timeout: float = settings.request_timeout) -> JsonClient:
        return JsonClient(name, getattr(up, services.entry(name).setting), session, timeout=timeout, clock=clock,
                          observe=metrics.upstream_call)

    ota_policy = settings.ota
    return Core(
        settings, clock, db, Catalogue.default(),
        RetryPolicy(attempts=ota_policy.attempts, backoff=ota_policy.backoff,
                    attempt_timeout=ota_policy.attempt_timeout, deadline=ota_policy.api_down_deadline),
        IotClient(client("iot")), VssClient(client("vss")), PaymentsClient(client("payments")),
        FactoryClient(client("factory", settings.factory.placement_timeout)),
        {country: RegistryClient(client(services.REGISTRY_COUNTRIES[country].name)) for country in COUNTRIES},
        metrics=metrics)


@dataclass
class Assembly:
    """A core ready to serve: its state, its job runner and what to close after."""
    core: Core
    runner: JobRunner
    session: aiohttp.ClientSession

    async def close(self) -> None:
        await self.session.close()
        await self.core.db.close()


async def assemble(settings: CoreSettings, clock: CoreClock, *, worker: str | None = None) -> Assembly:
    """Open the database, build the core and its runner; schedule the housekeeping once."""
    db = await Database.open(settings.database_url, sqlite_inline=settings.sqlite_inline)
    session = aiohttp.ClientSession()
    core = build_core(settings, clock, db, session)
    try:
        core.ids = await IdSource.open(db, seed=settings.id_seed, virtual=clock.mode == "virtual")
        await pruning.schedule(core)  # once per deployment, whichever process starts first
        await sales.watch_suspension(core)  # a suspension from before the factory probe existed
        if settings.webhook_backlog:
            core.backlog = backlog.Backlog(db, clock, settings.webhook_backlog, settings.webhook_retry_after)
            await core.backlog.sample()  # a restart finds the queue it left
    except BaseException:
        await session.close()
        await db.close()
        raise
    runner = JobRunner(db, clock, handlers(core), worker=worker or f"core-{os.getpid()}",
                       housekeeping=HOUSEKEEPING,
                       batches={kind: functools.partial(flow, core) for kind, flow in BATCHES.items()})
    core.kick = runner.kick
    return Assembly(core, runner, session)

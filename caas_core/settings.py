"""The core's settings: environment variables with a ``CAAS_`` prefix.

Nested values are JSON (``CAAS_API_KEYS='{"key": {"role": "customer", "subject": "c-1"}}'``)
or ``__``-separated (``CAAS_OTA__ATTEMPTS=5``). Defaults run the core against the
simulators on their default ports with a SQLite file in the working directory.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from caas_sim import catalogue

#: The webhook secret the simulators use unless configured otherwise (development only).
DEVELOPMENT_SECRET = "whsec_Y2Fhcy1zaW0tZGV2ZWxvcG1lbnQtc2VjcmV0LTAwMDA="


class ApiKey(BaseModel):
    role: Literal["dealership", "customer", "operator"]
    subject: str = Field(min_length=1, max_length=128)  # the customer or dealership id the key acts for


class OtaPolicy(BaseModel):
    attempts: int = Field(default=4, ge=3, le=5)
    backoff: tuple[float, ...] = (60.0, 300.0, 900.0, 1800.0)  # spec: 1, 5, 15, 30 minutes
    attempt_timeout: float = Field(default=60.0, gt=0)  # spec: 60 s per attempt
    api_down_deadline: float = Field(default=86400.0, gt=0)  # IoT API unreachable this long: final failure

    @field_validator("backoff")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(b <= 0 for b in value) or list(value) != sorted(value):
            raise ValueError("backoff must be positive delays in increasing order, e.g. [60, 300, 900, 1800]")
        return value


class FactoryPolicy(BaseModel):
    placement_timeout: float = Field(default=30.0, gt=0)  # spec: 30 s timeout
    backoff_base: float = Field(default=60.0, gt=0)       # exponential: 1, 2, 4, 8 min... capped
    backoff_cap: float = Field(default=3600.0, gt=0)
    #: Factory unreachable this long: new sales are suspended and dealerships told
    #: (the specification's acceptable factory downtime: 4 hours a month).
    suspend_sales_after: float = Field(default=4 * 3600.0, gt=0)
    #: While sales are suspended, clock seconds between two checks that the factory is back.
    probe_interval: float = Field(default=900.0, gt=0)


class BillingPolicy(BaseModel):
    retries: int = Field(default=3, ge=0, le=10)               # spec: up to 3 attempts
    backoff: tuple[float, ...] = (86400.0, 2 * 86400.0, 4 * 86400.0)  # 1, 2, 4 days


class PaymentPolicy(BaseModel):
    """A one-time purchase while the payment gateway is down (specification: "Defer payment,
    manual fallback"; the gateway's acceptable downtime is 22 minutes a month)."""
    #: Clock seconds between two charges of a deferred payment (the last one repeats).
    deferral_backoff: tuple[float, ...] = (60.0, 120.0, 300.0, 600.0, 900.0)
    #: Still down this long after the first try: manual payment processing (an operator ticket).
    manual_after: float = Field(default=3600.0, gt=0)
    #: Clock seconds a request charging a purchase holds it: a retry of its Idempotency-Key is
    #: 409 until then, and takes over after (the first request's process died).
    charge_lease: float = Field(default=120.0, gt=0)

    @field_validator("deferral_backoff")
    @classmethod
    def _positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(b <= 0 for b in value):
            raise ValueError("deferral_backoff must be positive delays, e.g. [60, 300, 900]")
        return value

    def retry_delay(self, tries: int) -> float:
        return self.deferral_backoff[min(tries, len(self.deferral_backoff) - 1)]


#: Where each peer answers: one field per service of the catalogue (``CAAS_UPSTREAMS__IOT``...),
#: its default where ``caas-sim up`` starts it.
Upstreams = create_model("Upstreams", __config__=ConfigDict(extra="forbid"),
                         **{e.setting: (str, e.default_url) for e in catalogue.SERVICES})


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAAS_", env_nested_delimiter="__", extra="forbid")

    database_url: str = "sqlite+aiosqlite:///caas.db"
    #: SQLite calls on the event loop's thread instead of aiosqlite's (``store.inline_sqlite``):
    #: for a world on a virtual clock whose database no other process writes.
    sqlite_inline: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    clock: str = "real"  # real | virtual | scaled:N
    seed: int = 0
    #: Seeds the core's ids on a virtual clock: a world run twice with one seed hands out the
    #: same ids (``store.ids``: each start on a database draws another stream, so none repeats).
    #: Ignored on a real or scaled clock; unset, ids are random.
    id_seed: int | None = None
    upstreams: Upstreams = Field(default_factory=Upstreams)  # type: ignore[valid-type]
    #: Secret per webhook source (the catalogue's senders: factory, payments, iot, registry-uk); ``*``
    #: for all; the development secret by default.
    webhook_secrets: dict[str, str] = Field(default_factory=dict)
    webhook_tolerance: float = Field(default=300.0, gt=0)  # Standard Webhooks: 5 minutes
    #: Jobs due and not yet run past which webhooks are answered 503 with Retry-After and
    #: not recorded (``flows.backlog``): the queue stays bounded when senders outpace the
    #: processing. 0: no bound.
    webhook_backlog: int = Field(default=20_000, ge=0)
    #: The Retry-After (seconds) of a webhook refused for a full backlog.
    webhook_retry_after: int = Field(default=5, ge=1, le=3600)
    api_keys: dict[str, ApiKey] = Field(default_factory=dict)
    admin_token: str | None = None
    #: False: an API-only process (it accepts requests and webhooks and enqueues their jobs;
    #: other core processes on the same PostgreSQL run the queue).
    run_jobs: bool = True
    ota: OtaPolicy = Field(default_factory=OtaPolicy)
    factory: FactoryPolicy = Field(default_factory=FactoryPolicy)
    billing: BillingPolicy = Field(default_factory=BillingPolicy)
    payments: PaymentPolicy = Field(default_factory=PaymentPolicy)
    vss_timeout: float = Field(default=5.0, gt=0)
    request_timeout: float = Field(default=30.0, gt=0)
    #: Maintenance thresholds per service id and block, overriding the catalogue's.
    maintenance_thresholds: dict[str, dict[str, int]] = Field(default_factory=dict)
    #: Clock seconds a processed webhook's inbox row is kept: its dedupe of redeliveries. A
    #: webhook-id redelivered later is accepted and processed again, so this must exceed the
    #: senders' retry window: Standard Webhooks senders (and the simulators) retry for about
    #: 28 hours; a week leaves room for a core that was down meanwhile.
    inbox_retention: float = Field(default=7 * 86400.0, gt=0)
    #: Clock seconds a done or cancelled job is kept (diagnostics). Any value is safe: an inbox
    #: row is kept while its processing job exists (see ``store.retention``).
    job_retention: float = Field(default=7 * 86400.0, gt=0)
    #: Clock seconds between two prunes, run at the boundaries counted from the epoch. A week:
    #: rows then live one to two retentions; a daily prune made a month-long journey in
    #: virtual time a quarter slower (four transactions a night) for no bound it needs.
    prune_interval: float = Field(default=7 * 86400.0, gt=0)

    def webhook_secret(self, source: str) -> str:
        return self.webhook_secrets.get(source) or self.webhook_secrets.get("*") or DEVELOPMENT_SECRET

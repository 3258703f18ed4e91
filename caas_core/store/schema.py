"""The core's tables: one ``MetaData``, portable across SQLite and PostgreSQL.

Portability rules every table follows (and why):

- Ids are strings. Entities get ids the domain chooses (a VIN, a gateway's payment id,
  a prefixed uuid), and string keys behave identically on both databases.
- Timestamps are ``Float`` epoch seconds **of the core's clock**, which is virtual in
  scenarios. A ``DateTime`` column would invite mixing in wall time and would carry
  time-zone behaviour that differs between the two databases. (``Float`` without a
  precision is 8-byte ``FLOAT`` on PostgreSQL and ``REAL`` on SQLite: both are doubles,
  which are exact to the microsecond for epoch seconds.)
- Money is ``BigInteger`` minor units plus a 3-letter ISO currency column, never a float.
- Free-form documents (job payloads, webhook bodies, diagnostics) use the generic
  ``JSON`` type: TEXT on SQLite, ``json`` on PostgreSQL, dicts on both sides.
- No foreign-key constraints. SQLite only enforces them with a per-connection pragma, so
  the same code would fail on PostgreSQL and pass on SQLite; and the flows create rows
  in the order external systems answer (a factory callback may name a vehicle before its
  customer row is written). Lookup columns are indexed instead.
- Check constraints only where the store itself owns the vocabulary (job status,
  notification channel, currency length); business statuses belong to ``domain``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

# Deterministic constraint names, so the same schema gets the same names on both
# databases and a future migration tool can refer to them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JOB_STATUSES = ("pending", "running", "done", "failed", "cancelled")
CHANNELS = ("email", "push", "in_vehicle")

ID = String(64)  # long enough for "<prefix>_<32 hex>" and external ids


def _in(column: str, values: tuple[str, ...]) -> str:
    """``column`` is one of ``values``, spelled as ORs: SQLite evaluates ``IN (list)`` through
    a temporary b-tree built per row written, which made the status check of ``jobs`` a
    third of an insert's cost (4 of 13 µs, measured on the webhook path)."""
    return " OR ".join(f"{column} = {value!r}" for value in values)


def _money(prefix: str = "") -> list:
    """An amount in minor units and its currency (``price_minor`` + ``currency``)."""
    return [
        Column(f"{prefix}_minor" if prefix else "amount_minor", BigInteger, nullable=False),
        Column("currency", String(3), nullable=False),
    ]


def _currency_check(table: str) -> CheckConstraint:
    return CheckConstraint("length(currency) = 3", name=f"{table}_currency")


# --- durable jobs: the transactional outbox of work to do later ----------------------

jobs = Table(
    "jobs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(100), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("run_at", Float, nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    # failed attempts so far (retry() increments it); a claim does not.
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # the rest of the OTA activation's progress (domain.ota_policy.ActivationProgress)
    Column("unavailable_retries", Integer, nullable=False, server_default=text("0")),
    Column("delay_notified", Boolean, nullable=False, server_default=false()),
    Column("last_error", Text),
    # the lease: who runs it and until when (core clock); a lapsed lease is claimable.
    Column("locked_by", String(200)),
    Column("locked_until", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # unique but nullable: several NULLs are allowed on both databases, so only jobs
    # that ask for idempotent enqueueing are constrained.
    Column("dedupe_key", String(300), unique=True),
    Column("correlation_id", String(200)),
    CheckConstraint(_in("status", JOB_STATUSES), name="status"),
    # claim_due reads pending jobs in (run_at, id) order and stops after its batch;
    # next_due reads the first.
    Index(None, "status", "run_at", "id"),
)

# --- webhook inbox: durable dedupe on (source, webhook-id) before acknowledging ------

webhook_inbox = Table(
    "webhook_inbox",
    metadata,
    Column("source", String(64), nullable=False),
    Column("webhook_id", String(255), nullable=False),  # the contracts' maxLength
    Column("received_at", Float, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("processed_at", Float),
    Column("outcome", Text),
    # the primary key IS the dedupe: a second insert of the same id cannot succeed.
    PrimaryKeyConstraint("source", "webhook_id"),
)

# --- domain state -----------------------------------------------------------------

customers = Table(
    "customers",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    # not unique: seeded fake customers may share an address; lookups use the id.
    Column("email", String(320), nullable=False, index=True),
    Column("api_key_hash", String(128), unique=True),
)

vehicles = Table(
    "vehicles",
    metadata,
    Column("vin", String(17), primary_key=True),
    # who holds the vehicle: the customer of its delivered sale, or the customer who linked a
    # vehicle of the existing fleet with their first purchase (flows.vehicles)
    Column("customer_id", ID, index=True),
    Column("model", String(100), nullable=False),
    Column("country", String(2)),  # unknown for a linked fleet vehicle (the API IoT does not say)
)

purchases = Table(
    "purchases",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", ID, nullable=False, index=True),
    Column("vin", String(17), nullable=False, index=True),
    Column("service_id", String(100), nullable=False),
    Column("duration_type", String(32), nullable=False),
    Column("expiry", Float),
    *_money("price"),
    Column("status", String(32), nullable=False),
    Column("payment_id", ID),
    # the OTA activation's id, looked up when the fleet's callback arrives
    Column("activation_request_id", String(100), index=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # the rest of the OTA activation's progress (domain.ota_policy.ActivationProgress)
    Column("unavailable_retries", Integer, nullable=False, server_default=text("0")),
    Column("delay_notified", Boolean, nullable=False, server_default=false()),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("delivered_at", Float),
    Column("refunded_minor", BigInteger, nullable=False, server_default=text("0")),
    Column("risk_flag", Boolean, nullable=False, server_default=false()),
    # the warnings shown at purchase (WARRANTY_EXPIRED, MAINTENANCE_RISK...), a list of codes,
    # shown again on every read of the purchase
    Column("warnings", JSON),
    # a subscription's payment method on file (the gateway's token), charged at month end
    # (and, for a one-time service, the card to charge until its payment goes through)
    Column("method_type", String(16)),
    Column("method_token", String(64)),
    # the request charging it holds the purchase until then (core clock); a retry of the same
    # Idempotency-Key before is 409, after it takes over (a crashed request)
    Column("charge_lease_until", Float),
    Column("deferred_since", Float),  # the gateway was down: when the payment was deferred
    Column("cancelled_at", Float),
    # switching the feature off again once it must be off (withdrawn, expired, cancelled,
    # given up): domain.ota_policy.DeactivationStatus, and the deactivation's OTA progress,
    # retried like an activation; the request id finds its callback
    Column("deactivation_status", String(16)),
    Column("deactivation_request_id", String(100), index=True),
    Column("deactivation_round", Integer, nullable=False, server_default=text("0")),  # deactivations started
    Column("deactivation_queued_at", Float),
    Column("deactivation_attempts", Integer, nullable=False, server_default=text("0")),
    Column("deactivation_unavailable_retries", Integer, nullable=False, server_default=text("0")),
    Column("deactivated_at", Float),  # the feature confirmed off on the vehicle
    # what the vehicle last reported for the service (ACTIVE | PENDING | ERROR | ABSENT) and when
    Column("vehicle_service_status", String(16)),
    Column("vehicle_checked_at", Float),
    _currency_check("purchases"),
)

# --- vehicle sales: reservation, factory order, final payment, registration, delivery --

sales = Table(
    "sales",
    metadata,
    Column("id", ID, primary_key=True),
    Column("dealership_id", String(32), nullable=False, index=True),
    Column("customer_id", ID, nullable=False, index=True),
    # the commercial plan: customer data, model and options, insurance (as registered)
    Column("plan", JSON, nullable=False),
    Column("country", String(2), nullable=False),
    Column("model", String(32), nullable=False),
    *_money("price"),
    Column("reservation_minor", BigInteger, nullable=False),
    Column("status", String(32), nullable=False),
    Column("order_id", String(64), index=True),
    Column("order_attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_sequence", Integer, nullable=False, server_default=text("0")),  # factory notifications
    Column("estimated_date", String(10)),
    Column("vin", String(17), index=True),
    Column("registration_id", String(64), index=True),
    Column("registration_status", String(32), nullable=False, server_default="NOT_STARTED"),
    Column("registration_attempts", Integer, nullable=False, server_default=text("0")),
    # what the authority or staff need: required fields, errors, rejection, manual package
    Column("registration_detail", JSON),
    Column("plate_number", String(16)),
    Column("delivery_id", String(64)),
    Column("delivery_attempts", Integer, nullable=False, server_default=text("0")),
    # a payment being taken (flows.sale_payments): {"kind": RESERVATION|FINAL, "leaseUntil": core clock}
    Column("payment_intent", JSON),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    _currency_check("sales"),
)

#: The customer's file (expediente): everything that happened to a sale, in order.
sale_events = Table(
    "sale_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sale_id", ID, nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("detail", JSON, nullable=False),
    Index(None, "sale_id", "id"),
)

#: Month-end invoices of post-paid subscriptions (one per subscription and month).
invoices = Table(
    "invoices",
    metadata,
    Column("id", ID, primary_key=True),
    Column("purchase_id", ID, nullable=False, index=True),
    Column("period_start", Float, nullable=False),
    Column("period_end", Float, nullable=False),
    *_money(),
    Column("status", String(16), nullable=False),  # OPEN | PAID | UNPAID | NOTHING_DUE
    Column("failures", Integer, nullable=False, server_default=text("0")),
    Column("payment_id", ID),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("purchase_id", "period_start"),
    _currency_check("invoices"),
)

#: Small shared facts every core process must agree on (the factory outage, sales suspension).
system_state = Table(
    "system_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
)

payments = Table(
    "payments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("purchase_id", ID, index=True),
    Column("sale_id", ID, index=True),
    # the gateway's id: unique so a replayed gateway webhook maps to one payment
    Column("gateway_payment_id", String(100), unique=True),
    Column("kind", String(32), nullable=False),
    *_money(),
    Column("status", String(32), nullable=False),
    # the gateway's event sequence of the last settlement or chargeback webhook applied
    Column("last_sequence", Integer, nullable=False, server_default=text("0")),
    Column("settled_at", Float),
    Column("failure_reason", Text),
    Column("created_at", Float, nullable=False),
    _currency_check("payments"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("id", ID, primary_key=True),
    Column("payment_id", ID, nullable=False, index=True),
    *_money(),
    Column("status", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    _currency_check("refunds"),
)

collection_cases = Table(
    "collection_cases",
    metadata,
    Column("id", ID, primary_key=True),
    Column("payment_id", ID, nullable=False, index=True),
    Column("customer_id", ID, nullable=False, index=True),
    *_money(),
    Column("reason", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    _currency_check("collection_cases"),
)

# --- outboxes the API reads -------------------------------------------------------

notifications = Table(
    "notifications",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", ID, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("template", String(100), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("read_at", Float),
    CheckConstraint(_in("channel", CHANNELS), name="channel"),
    # the API lists a customer's notifications in time order
    Index(None, "customer_id", "created_at"),
)

support_tickets = Table(
    "support_tickets",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", ID, nullable=False, index=True),
    Column("vin", String(17)),  # none for a sale with no vehicle assigned yet
    Column("purchase_id", ID, index=True),
    Column("subject", Text, nullable=False),
    Column("diagnostics", JSON, nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(64), nullable=False),
    # what was decided about: a purchase id, a customer id, a card fingerprint...
    Column("subject", String(200), nullable=False),
    Column("decision", String(64), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Index(None, "subject", "created_at"),
)

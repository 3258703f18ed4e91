"""Magic test values: the common faults without an admin call, like a gateway's test cards.

The dealership id of an order chooses how the factory treats it; the
customer's last name chooses how the home delivery goes. Documented in the
info description of contracts/factory.yaml (keep the two in step).
"""

from __future__ import annotations

#: dealership.id -> behaviour of the factory for the orders of that dealership.
DEALERSHIPS: dict[str, str] = {
    "TEST-REJECT": "rejected",                # 422 order-rejected, reason DEALERSHIP_NOT_AUTHORISED
    "TEST-UNAVAILABLE": "unavailable_twice",  # 503 + Retry-After on the first two attempts of a reference
    "TEST-SLOW": "slow_created",              # placement takes 45 s of clock time; the order is created
    "TEST-SLOW-NO-ORDER": "slow_not_created",  # 45 s, then 504; no order is created
    "TEST-QC-FAIL": "qc_fails_once",          # the first quality control fails; rework; the second passes
    "TEST-DELAY": "production_delay",         # production slips 7 days (SUPPLIER_SHORTAGE) mid-assembly
    "TEST-WEBHOOK-DUP": "webhooks_duplicated",   # every notification delivered twice (same webhook-id)
    "TEST-WEBHOOK-REORDER": "webhooks_reordered",  # each even orderStatus sequence arrives after the next one
    "TEST-WEBHOOK-DELAY": "webhooks_delayed",      # every notification leaves an hour late
    "TEST-WEBHOOK-LOST": "webhook_lost",           # ORDER_PLACED lost, redelivered 72 h later
}

#: customer.lastName (any case) -> behaviour of the transport company at the door.
CUSTOMERS: dict[str, str] = {
    "ABSENT": "absent_once",    # nobody home at the first delivery; a rescheduled one succeeds
    "NEVERHOME": "always_absent",  # nobody home, ever: the customer must collect at the dealership
}

SLOW_SECONDS = 45.0           # beyond the caller's 30 s timeout
UNAVAILABLE_ATTEMPTS = 2
UNAVAILABLE_RETRY_AFTER = 60
DELAY_DAYS = 7
WEBHOOK_DELAY_SECONDS = 3600.0
LOST_REDELIVER_AFTER = 72 * 3600.0  # after PRODUCTION_SCHEDULED (at most 2 days by default) has arrived


def dealership(dealership_id: str) -> str | None:
    return DEALERSHIPS.get(dealership_id)


def customer(last_name: str) -> str | None:
    return CUSTOMERS.get(last_name.strip().upper())

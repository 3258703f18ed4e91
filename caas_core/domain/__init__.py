"""Pure domain rules and state machines of the reference core (no I/O, no clock reads).

Service path: ``money`` (integer minor units), ``blocks`` (VSS functional blocks),
``catalogue`` (services, prices, OTA configuration), ``maintenance`` (purchase gating by
VSS compliance), ``purchase`` (delivery state machine), ``ota_policy`` (OTA retries),
``support`` (final OTA failure: ticket, refund), ``refunds`` (withdrawal, undelivered),
``settlement`` (settlement, failure, chargeback), ``billing`` (post-paid subscriptions),
``notifications`` (notices and channels). Time is always passed in as epoch seconds.
"""

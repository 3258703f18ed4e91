"""Persistence of the core: SQLAlchemy Core (async) on SQLite by default, PostgreSQL by URL.

- ``schema``: the tables (one MetaData, portable across both databases)
- ``db``: engines, ``Database`` (transactions), ``DatabaseUnavailable``
- ``jobs``: the durable job queue (transactional outbox, leased claims)
- ``inbox``: durable webhook dedupe on (source, webhook-id)
- ``outbox``: notifications, support tickets, the audit log of risk decisions
- ``retention``: pruning of processed inbox rows and finished jobs (bounded tables)

Every time stored here is the core's clock (virtual in scenarios), passed in by the
caller; nothing in this package reads wall time.
"""

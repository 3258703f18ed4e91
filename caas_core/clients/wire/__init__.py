"""The external systems' answers and webhooks as the core reads them: pydantic models, one
module per peer (``iot``, ``vss``, ``payments``, ``factory``, ``registries``) over ``base``.

Parsed once at the edge: the typed clients (``clients.upstreams``) return these models, and
the webhook receiver (``flows.webhooks``) parses each body before it is stored, as each
processing job parses the stored body again before acting on it. Each model holds only the
fields the core reads and ignores the rest (a peer may add fields); ``tests/core/
test_wire_models.py`` checks every one against its contract in ``contracts/``.
"""

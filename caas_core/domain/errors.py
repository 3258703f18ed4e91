"""What the rules refuse, in the domain's words: the flows raise these, the API answers them
as problem+json (``api.problems``), choosing the HTTP status by the class.

``kind`` names the problem type (the contracts' ``type`` URIs end in it); ``extra`` carries
the fields a problem adds (``saleStatus``, ``purchaseId``...); ``retry_after`` becomes the
answer's Retry-After.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    def __init__(self, title: str, detail: str | None = None, *, kind: str | None = None,
                 retry_after: int | None = None, **extra: Any):
        super().__init__(detail or title)
        self.title, self.detail = title, detail
        self.retry_after = retry_after  # seconds after which trying again may succeed
        self.kind = kind or "-".join(title.lower().replace(",", "").split())
        self.extra = extra


class NotFound(DomainError):
    """No such thing, or not the caller's."""


class Conflict(DomainError):
    """Not in a state that allows it now (or another request is doing it)."""


class Refused(DomainError):
    """A business rule refuses it (maintenance, withdrawal period, a declined payment...)."""


class PeerUnavailable(DomainError):
    """A system it depends on did not answer; nothing was done, the caller may retry."""


class Overloaded(DomainError):
    """The core has more work queued than it takes on; nothing was done, the caller may retry."""

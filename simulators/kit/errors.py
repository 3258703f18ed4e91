"""Domain errors a model raises; the kit answers them as problem+json (no HTTP here)."""

from __future__ import annotations

from typing import Any


class ProblemError(Exception):
    def __init__(self, status: int, title: str, detail: str | None = None, *, kind: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.kind = status, title, detail, kind
        self.headers, self.extra = headers, extra


class ResetWhileHeld(Exception):
    """The service was reset while a request was held on its clock: the world that request
    was answering is gone, and it must not act on the one after (see ``Service.hold``)."""

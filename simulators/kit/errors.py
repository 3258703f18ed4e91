"""Domain errors a model raises; the kit answers them as problem+json (no HTTP here)."""

from __future__ import annotations

from typing import Any


class ProblemError(Exception):
    def __init__(self, status: int, title: str, detail: str | None = None, *, kind: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.kind = status, title, detail, kind
        self.headers, self.extra = headers, extra

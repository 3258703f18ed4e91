"""Logs a team can ship: text or JSON lines, the correlation id on every line, secrets never.

The simulators and the core set ``CORRELATION`` for the request (or job) at hand; the
filter puts it on every record logged meanwhile. ``configure`` is what ``caas-sim up`` and
``serve`` call (``--log-format``, ``--log-level``, ``--access-log``; ``CAAS_LOG_*``).
A leaf module, like the catalogue: both sides set the id without knowing each other.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar

from aiohttp.http_exceptions import HttpProcessingError

#: The correlation id of the request or job being handled in this task.
CORRELATION: ContextVar[str | None] = ContextVar("caas_correlation_id", default=None)
#: The logger of the access log (one line per request, when asked for).
ACCESS_LOGGER = "caas.access"
#: aiohttp's access-log fields: client, request line, status, size, seconds taken.
ACCESS_FORMAT = '%a "%r" %s %b %Tf'

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Webhook secrets, bearer tokens and API keys after "Bearer", passwords in URLs.
_SECRETS = re.compile(r"whsec_[A-Za-z0-9+/=]+|(?<=Bearer )[^\s\"',]+|(?<=://)([^:/@\s]+):[^@/\s]+(?=@)")
_TEXT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"


def redact(text: str) -> str:
    """``text`` with every secret it holds masked."""
    return _SECRETS.sub(lambda m: f"{m.group(1)}:***" if m.group(1) else "***", text)


class _Context(logging.Filter):
    """Adds the correlation id and masks secrets (the message is rendered once, here)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = CORRELATION.get() or "-"
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                "level": record.levelname, "logger": record.name, "message": record.getMessage(),
                "correlationId": None if getattr(record, "correlation_id", "-") == "-" else record.correlation_id}
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


class _ClientsUnparsable(logging.Filter):
    """aiohttp logs a request it cannot parse (a control character in a header, a bad request
    line) at ERROR with its traceback, though it is the client's error and was answered 400:
    a fuzzer or a scanner would fill the log with them. One line at INFO says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "%s: %s %s", (record.getMessage(), exc.code, " ".join(exc.message.split()))
            record.exc_info = record.exc_text = None
            return logging.getLogger().isEnabledFor(logging.INFO)
        return True


def configure(*, level: str = "INFO", fmt: str = "text", stream=None) -> None:
    """One handler on the root logger (replacing any), UTC times."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: one of {', '.join(FORMATS)}")
    if level.upper() not in LEVELS:
        raise ValueError(f"log level {level!r}: one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_Context())
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT)
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # ours is ACCESS_LOGGER, when asked for
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ClientsUnparsable) for f in server.filters):
        server.addFilter(_ClientsUnparsable())

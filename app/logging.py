"""Logging setup: JSON lines with event names and opaque ids; a denylist filter keeps PHI and secrets out."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# Keys that must never reach a log line, whatever a caller passes in `extra`.
DENYLIST = frozenset(
    {
        "prefetch",
        "context",
        "body",
        "request",
        "resource",
        "resources",
        "card",
        "cards",
        "summary",
        "detail",
        "patient",
        "patient_id",
        "patientId",
        "access_token",
        "token",
        "authorization",
        "fhirAuthorization",
        "url",
        "query",
        "user_comment",
        "userComment",
    }
)
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {
    "message",
    "asctime",
    "taskName",
}


class DenylistFilter(logging.Filter):
    """Drops denylisted `extra` fields from every record (a backstop; callers log ids only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key in list(vars(record)):
            if key in DENYLIST:
                delattr(record, key)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in DENYLIST and not key.startswith("_"):
                payload[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type only: messages and tracebacks can carry PHI.
            payload["exc_type"] = record.exc_info[0].__name__
        return json.dumps(payload, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(DenylistFilter())
    root = logging.getLogger("iliac_cds")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = True
    # uvicorn's access log prints full request lines with query strings; ours logs templates instead.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request URL (patient ids, search parameters) at INFO; SQLAlchemy and the database
    # drivers log SQL with its bound parameters (feedback comments, HMACs) at INFO/DEBUG. Pinned here so a
    # DEBUG root logger (or an operator's logging config) cannot turn them on.
    for name in ("httpx", "httpcore", "sqlalchemy", "aiosqlite", "asyncpg"):
        logging.getLogger(name).setLevel(logging.WARNING)

"""Structured JSON logs on stderr or in a file: one object a line, with the ``extra`` fields."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from temporalio.exceptions import ApplicationError

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
# Libraries that narrate every connection step at INFO: only their warnings are worth a line.
_CHATTY = ("pika",)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object, its ``extra`` fields included."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RejectionsWithoutTraceback(logging.Filter):
    """Logs a rejected command (a non-retryable ``ApplicationError``) without its traceback.

    The Temporal SDK logs every failed activity with its traceback. Bad input or a broken
    business rule is the command's answer, not a fault in the worker: the error's type and
    message say all there is to say, and a traceback in the log reads like a crash.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ApplicationError) and error.non_retryable:
            record.exc_info = None
            record.exc_text = None
            record.error_type = error.type
            record.error = error.message
        return True


def configure_logging(level: str = "INFO", *, path: Path | None = None) -> None:
    """Send every logger's records as JSON lines to ``path`` (appended to), or else stderr."""
    if path is None:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RejectionsWithoutTraceback())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))

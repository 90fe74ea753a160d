"""Structured JSON logs on stderr or in a rotating file: one object a line, each carrying the
context of the unit of work it was written in (the command, its workflow run, the trace).

The context is bound once per unit of work (``bind_context``: the worker's activity interceptor
binds a command's ids, workers/interceptors.py) and read by a handler filter, so every line
written inside it carries it, the Temporal SDK's, psycopg's and pika's lines included, without
``extra=`` at each call. Stdlib ``contextvars`` rather than structlog: the lines worth the
context are mostly the libraries' stdlib records, which a handler filter sees as they are.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import MappingProxyType
from typing import Final

import temporalio.activity
import temporalio.workflow
from opentelemetry import trace
from temporalio.exceptions import ApplicationError

from acci.activities.errors import REJECTION_TYPES

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
# Libraries that narrate every connection step at INFO: only their warnings are worth a line.
_CHATTY = ("pika",)
# The Temporal SDK puts its workflow or activity info on its records as one nested object
# (``temporal_workflow`` / ``temporal_activity``): its fields go on the line under the names
# ACCI's own context uses, once, instead of a second copy nested.
_TEMPORAL_EXTRAS: Final = ("temporal_workflow", "temporal_activity")
_TEMPORAL_FIELDS: Final = {
    "workflow_id": "workflow_id",
    "run_id": "run_id",
    "workflow_run_id": "run_id",
    "workflow_type": "workflow_type",
    "activity_type": "activity_type",
    "attempt": "attempt",
}
# Credentials in anything that reaches a line (an exception's text that quotes a URL, say):
# a URL's password, and libpq's ``password=…`` parameter.
_URL_PASSWORD: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@\"']*):[^\s@\"']*@")
_PARAM_PASSWORD: Final = re.compile(r"\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s\"']+)", re.I)

_CONTEXT: ContextVar[Mapping[str, object]] = ContextVar(
    "acci_log_context", default=MappingProxyType({})
)


def redact(text: str) -> str:
    """``text`` with every URL password and ``password=`` value replaced by ``***``."""
    return _PARAM_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", text))


def bind_context(**fields: object) -> Token[Mapping[str, object]]:
    """Add ``fields`` (None values left out) to every line logged in the current context from
    now on: the rest of this task, and tasks it starts. Returns the token that undoes it."""
    bound = {k: v for k, v in fields.items() if v is not None}
    return _CONTEXT.set(MappingProxyType({**_CONTEXT.get(), **bound}))


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """``bind_context`` for the duration of a block."""
    token = bind_context(**fields)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> Mapping[str, object]:
    """The fields bound in the current context."""
    return _CONTEXT.get()


class ContextFields(logging.Filter):
    """Puts the bound context, and the current trace and span ids, on each record.

    A field the record names itself (``extra=``) wins. The trace ids come from OpenTelemetry's
    current span; with no tracing configured it is invalid and they are left out.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            if key not in record.__dict__:
                setattr(record, key, value)
        span = trace.get_current_span().get_span_context()
        if span.is_valid and "trace_id" not in record.__dict__:
            record.trace_id = format(span.trace_id, "032x")
            record.span_id = format(span.span_id, "016x")
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object, its ``extra`` fields included, passwords redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _TEMPORAL_EXTRAS and isinstance(value, Mapping):
                for name, field in _TEMPORAL_FIELDS.items():
                    if name in value:
                        entry.setdefault(field, value[name])
            elif key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


class RejectionsWithoutTraceback(logging.Filter):
    """Logs a rejection (an ``ApplicationError`` of ``REJECTION_TYPES``) without its traceback.

    The Temporal SDK logs every failed activity with its traceback. Bad input or a broken
    business rule is the command's answer, not a fault in the worker: the error's type and
    message say all there is to say, and a traceback in the log reads like a crash.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ApplicationError) and error.type in REJECTION_TYPES:
            record.exc_info = None
            record.exc_text = None
            record.error_type = error.type
            record.error = error.message
        return True


def configure_logging(
    level: str = "INFO",
    *,
    path: Path | None = None,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
) -> None:
    """Send every logger's records as JSON lines to stderr, or to ``path`` (appended to, and
    rotated at ``max_bytes`` with ``backups`` old files kept: ``path.1`` … ``path.N``)."""
    if path is None:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RejectionsWithoutTraceback())
    handler.addFilter(ContextFields())
    # The SDK's loggers would also append their info to each message as a Python dict: the
    # formatter puts its fields on the line already.
    temporalio.activity.logger.activity_info_on_message = False
    temporalio.workflow.logger.workflow_info_on_message = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))

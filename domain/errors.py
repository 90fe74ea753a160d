"""The domain's error tree, and the one place where pydantic errors become a command error."""

from __future__ import annotations

from typing import Any, ClassVar

import pydantic
from pydantic_core import ErrorDetails

# Long inputs (a pasted document as a tenant name) would drown the message; show the start.
_MAX_SHOWN_INPUT = 60


class CommandError(Exception):
    """Root of every error a command can end with."""

    code: ClassVar[str] = "command"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class CommandValidationError(CommandError):
    """The command (or an event's stored data) was malformed; nothing was written."""

    code: ClassVar[str] = "validation"


class ConcurrencyError(CommandError):
    """The stream moved on since it was read; reload and decide again."""

    code: ClassVar[str] = "concurrency"


class PersistenceError(CommandError):
    """The events could not be stored or read; retrying may succeed."""

    code: ClassVar[str] = "persistence"


class DomainError(CommandError):
    """The command is well-formed but breaks a business rule, named by ``reason``."""

    code: ClassVar[str] = "domain"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class HandlerError(CommandError):
    """The application's own code (a decision, a rule, an authorization on state) raised
    something other than a command error: a fault there, which no retry would change."""

    code: ClassVar[str] = "handler"


class AuthorizationError(CommandError):
    """The command's principal may not send it (or none was given); nothing was written."""

    code: ClassVar[str] = "authorization"


class UnknownEventTypeError(CommandValidationError):
    """An event type, or a version of one, that the registry cannot read."""

    def __init__(
        self, event_type: str, event_version: int | None = None, *, detail: str | None = None
    ) -> None:
        message = f"unknown event type {event_type!r}"
        if event_version is not None:
            message += f" (version {event_version})"
        if detail:
            message += f": {detail}"
        super().__init__(message)
        self.event_type = event_type
        self.event_version = event_version
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        # The default rebuilds from args, which hold the message, not the constructor's arguments.
        return (_rebuild_unknown_event_type, (self.event_type, self.event_version, self.detail))


def _rebuild_unknown_event_type(
    event_type: str, event_version: int | None, detail: str | None
) -> UnknownEventTypeError:
    return UnknownEventTypeError(event_type, event_version, detail=detail)


def validation_error_from_pydantic(
    exc: pydantic.ValidationError, what: str
) -> CommandValidationError:
    """One readable ``CommandValidationError`` for everything pydantic found wrong in ``what``."""
    return CommandValidationError(f"invalid {what}: {describe_problems(exc)}")


def describe_problems(exc: pydantic.ValidationError) -> str:
    """Everything pydantic found wrong, as one line naming each field and value."""
    return "; ".join(_describe(error) for error in exc.errors())


def _describe(error: ErrorDetails) -> str:
    # Our own validators raise ValueError with a message that already names the value.
    message = str(error["msg"]).removeprefix("Value error, ")
    location = ".".join(str(part) for part in error["loc"])
    text = f"{location}: {message}" if location else message
    # A missing field's "input" is the whole enclosing object, which says nothing useful.
    if error["type"] in ("value_error", "missing") or isinstance(error["input"], dict):
        return text
    return f"{text} (got {shown(error['input'])})"


def shown(value: object) -> str:
    """``repr(value)`` cut to a length that fits in an error message."""
    text = repr(value)
    if len(text) > _MAX_SHOWN_INPUT:
        text = text[: _MAX_SHOWN_INPUT - 1] + "…"
    return text

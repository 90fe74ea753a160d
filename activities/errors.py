"""The one place where ACCI's errors become Temporal ``ApplicationError``s (any workflow)."""

from __future__ import annotations

from typing import Final

from temporalio.exceptions import ApplicationError

from domain.errors import (
    AuthorizationError,
    CommandError,
    CommandValidationError,
    ConcurrencyError,
    DomainError,
    PersistenceError,
)
from readmodels.errors import NotFoundError, ProjectionError, QueryError

# Checked in order: the first family an error belongs to names it. The store's errors subclass
# these too (eventstore.errors.ConcurrencyError is a domain ConcurrencyError, ...).
_FAMILIES: Final[tuple[type[CommandError], ...]] = (
    CommandValidationError,
    AuthorizationError,
    DomainError,
    ConcurrencyError,
    PersistenceError,
)

# Retrying cannot change the answer: the command is malformed, forbidden or breaks a rule, or
# it lost every one of its bounded reload-and-decide attempts; or an operator's projection
# request names no such projection or parked event, or it was resolved already or failed again.
# (Database and broker outages stay retryable.) Both workflows use this one set.
NON_RETRYABLE_TYPES: Final = (
    "CommandValidationError",
    "AuthorizationError",
    "DomainError",
    "ConcurrencyError",
    "ProjectionError",
    "NotFoundError",
)


def application_error(exc: CommandError | QueryError) -> ApplicationError:
    """``exc`` as an ApplicationError whose type and message the Web UI and CLIs show."""
    if isinstance(exc, QueryError):
        # A projection request's error: its family is all a client needs (not found or not).
        query_type = "NotFoundError" if isinstance(exc, NotFoundError) else ProjectionError.__name__
        return ApplicationError(str(exc), type=query_type, non_retryable=True)
    family = next((f for f in _FAMILIES if isinstance(exc, f)), CommandError)
    error_type = family.__name__
    details = {"code": exc.code, "error": type(exc).__name__}
    reason = getattr(exc, "reason", None)
    if reason:
        details["reason"] = reason
    return ApplicationError(
        str(exc), details, type=error_type, non_retryable=error_type in NON_RETRYABLE_TYPES
    )


_BY_TYPE: Final[dict[str, type[CommandError]]] = {f.__name__: f for f in _FAMILIES}


def command_error(error: ApplicationError) -> CommandError:
    """A failed command's ApplicationError as the typed CommandError a client catches."""
    family = _BY_TYPE.get(error.type or "", CommandError)
    details = error.details[0] if error.details and isinstance(error.details[0], dict) else {}
    if family is DomainError:
        return DomainError(error.message, reason=details.get("reason"))
    return family(error.message)

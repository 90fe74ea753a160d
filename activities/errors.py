"""The one place where ACCI's errors become Temporal ``ApplicationError``s (any workflow)."""

from __future__ import annotations

from typing import Final

from temporalio.exceptions import ApplicationError

from acci.domain.errors import (
    AuthorizationError,
    CommandError,
    CommandValidationError,
    ConcurrencyError,
    DomainError,
    HandlerError,
    PersistenceError,
)
from acci.eventstore import errors as store
from acci.readmodels.errors import NotFoundError, ProjectionError, QueryError

# Checked in order: the first family an error belongs to names it.
_FAMILIES: Final[tuple[type[CommandError], ...]] = (
    AuthorizationError,
    CommandValidationError,
    DomainError,
    HandlerError,
    ConcurrencyError,
    PersistenceError,
)

# The event store's errors have a tree of their own; a client knows them by the command family
# of the same meaning (a malformed append is a malformed command, an outage an outage).
_STORE_FAMILIES: Final[tuple[tuple[type[store.EventStoreError], type[CommandError]], ...]] = (
    # A data key this process cannot unwrap (a master key missing from its settings, during a
    # rotation say) is the operator's to fix, and the command's retry then succeeds.
    (store.DataKeyUnavailableError, PersistenceError),
    (store.EventStoreValidationError, CommandValidationError),
    (store.ConcurrencyError, ConcurrencyError),
    (store.PersistenceError, PersistenceError),
)

# Retrying cannot change the answer: the command is malformed, its principal may not send it,
# it breaks a rule, or it lost every one of its bounded reload-and-decide attempts, or the
# application's own code failed on it (HandlerError: a fault, its traceback in the log); or an
# operator's projection request names no such projection or parked event, or it was resolved
# already or failed again. (Database and
# broker outages stay retryable.) Both workflows use this one set.
NON_RETRYABLE_TYPES: Final = (
    "CommandValidationError",
    "HandlerError",
    "AuthorizationError",
    "DomainError",
    "ConcurrencyError",
    "ProjectionError",
    "NotFoundError",
)

# A projection workflow's start whose input does not decode (workflows/projection.py).
PROJECTION_INPUT_ERROR: Final = "ProjectionValidationError"

# The failures that are an answer, not a fault: bad input, a broken rule, lost races, an
# operator's request for something that is not there, and a refused principal (issue 14). Their
# type and message say everything: the Web UI shows them without a stack trace
# (workers/converter.py) and the log without a traceback (workers/logs.py). A failed rebuild or
# backup is non-retryable too, but a fault: it keeps its traces. So is HandlerError (the
# application's own code failed), whose traceback the worker logs where it is raised.
# An operator's job started with input that does not decode (workflows/inputs.py).
JOB_INPUT_ERROR: Final = "JobValidationError"

REJECTION_TYPES: Final = frozenset({*NON_RETRYABLE_TYPES, PROJECTION_INPUT_ERROR, JOB_INPUT_ERROR})

# A rejected command's family in one word: the outcome label of its metrics and the end of its
# run's current details ("RegisterUser acme/eve rejected: validation").
REJECTION_FAMILIES: Final = {
    "CommandValidationError": "validation",
    "DomainError": "domain",
    "ConcurrencyError": "concurrency",
    "AuthorizationError": "authorization",
    "HandlerError": "handler",
}


def application_error(
    exc: CommandError | store.EventStoreError | QueryError,
) -> ApplicationError:
    """``exc`` as an ApplicationError whose type and message the Web UI and CLIs show."""
    if isinstance(exc, QueryError):
        # A projection request's error: its family is all a client needs (not found or not).
        query_type = "NotFoundError" if isinstance(exc, NotFoundError) else ProjectionError.__name__
        return ApplicationError(str(exc), type=query_type, non_retryable=True)
    if isinstance(exc, store.EventStoreError):
        family = next((f for s, f in _STORE_FAMILIES if isinstance(exc, s)), None)
        if family is None:  # an unexpected database error: retried, under its own name
            return ApplicationError(str(exc), type=type(exc).__name__)
        details = {"code": family.code, "error": type(exc).__name__}
    else:
        family = next((f for f in _FAMILIES if isinstance(exc, f)), CommandError)
        details = {"code": exc.code, "error": type(exc).__name__}
        reason = getattr(exc, "reason", None)
        if reason:
            details["reason"] = reason
    error_type = family.__name__
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

"""The event store's errors, and the one place where driver errors become them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import psycopg
from psycopg import errors as pg_errors


class EventStoreError(Exception):
    """Root of every error the event store raises.

    ``code`` names the family (as ``acci`` prints it: ``error (<code>)``); the activities map
    the families onto the command errors a client sees (activities/errors.py).
    """

    code: ClassVar[str | None] = None


class PersistenceError(EventStoreError):
    """The database could not be reached or did not answer in time; retrying may succeed."""

    code: ClassVar[str | None] = "persistence"


class ConcurrencyError(EventStoreError):
    """The stream's version was not the expected one."""

    def __init__(self, tenant_id: str, aggregate_id: str, expected: int | str, actual: int) -> None:
        super().__init__(
            f"stream {tenant_id}/{aggregate_id}: expected version {expected}, actual {actual}"
        )
        self.tenant_id = tenant_id
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual

    code: ClassVar[str | None] = "concurrency"


class EventStoreValidationError(EventStoreError):
    """The request was malformed (or a stored event cannot be read); nothing was written."""

    code: ClassVar[str | None] = "validation"


class InvalidIdentifierError(EventStoreValidationError):
    """A tenant, aggregate, type or event-type name broke the identifier rules."""


class PayloadTooLargeError(EventStoreValidationError):
    """An event's data or metadata exceeded the configured size limit."""


class TooManyEventsError(EventStoreValidationError):
    """An append carried more events than the configured maximum (or none)."""


class UnsupportedEventTypeError(EventStoreValidationError):
    """An event type, or a version of one, that the store's registry cannot write or read (the
    registry's own ``domain.errors.UnknownEventTypeError`` is its cause where it said so)."""


class CommandIdReusedError(EventStoreValidationError):
    """A command id already used for one command was sent with another.

    The message names nothing of the first command (its tenant, stream or result): the second
    sender may not be entitled to know them.
    """

    def __init__(self, command_id: object) -> None:
        super().__init__(
            f"command id {command_id} was already used for a different command;"
            " send this one with a new command id"
        )


class CommandRemovedByRestoreError(EventStoreValidationError):
    """A command whose events a restore removed was sent again (migration 011): refused, not
    applied a second time; the message names the restore."""


class NotAnEventWriterError(EventStoreValidationError):
    """A transaction that wrote something else first tried to append events (migration 005)."""


class DuplicateKeyError(EventStoreError):
    """A row with the same key is already stored (a unique constraint refused the write)."""


def translate(exc: psycopg.Error) -> EventStoreError:
    """Map a psycopg error to the event store's own error (the only place that does)."""
    sqlstate = exc.sqlstate or ""
    message = exc.diag.message_primary or str(exc)
    if sqlstate == "ACW01":
        return NotAnEventWriterError(message)
    if sqlstate == "ACR01":
        return CommandRemovedByRestoreError(message)
    if isinstance(exc, pg_errors.UniqueViolation):
        return DuplicateKeyError(message)
    if isinstance(exc, pg_errors.StringDataRightTruncation | pg_errors.CharacterNotInRepertoire):
        return EventStoreValidationError(message)
    if isinstance(exc, pg_errors.UntranslatableCharacter):
        return EventStoreValidationError(f"payload cannot be stored as JSON: {message}")
    if isinstance(
        exc,
        psycopg.OperationalError
        | pg_errors.QueryCanceled
        | pg_errors.LockNotAvailable
        | pg_errors.AdminShutdown
        | pg_errors.SerializationFailure
        | pg_errors.DeadlockDetected,
    ):
        return PersistenceError(f"event store unavailable: {message}")
    return EventStoreError(f"event store error ({sqlstate or type(exc).__name__}): {message}")


@contextmanager
def translated(cause: BaseException | None = None) -> Iterator[None]:
    """A block that talks to PostgreSQL: a psycopg error leaves it as the store's typed error.

    The event store's one database boundary (with ``eventstore/db.py``, which opens the
    connections): no other module of the package catches psycopg's errors.
    ``cause`` chains the typed error to another exception than the psycopg one.
    """
    try:
        yield
    except psycopg.Error as e:
        raise translate(e) from (cause or e)


class MessagingError(PersistenceError):
    """RabbitMQ could not be reached or did not confirm a message; retrying may succeed."""


class EncryptionError(EventStoreValidationError):
    """An encrypted payload cannot be written or read (retrying will not change that)."""


class TenantKeyShreddedError(EncryptionError):
    """The tenant's data key was destroyed (``acci tenant shred``): its payloads are unreadable
    for good, and nothing more is written for it."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(
            f"tenant {tenant_id!r} was shredded: its data key is destroyed, its events and"
            " snapshots can no longer be read, and nothing more can be written for it"
        )
        self.tenant_id = tenant_id


class UnknownTenantError(EventStoreValidationError):
    """The tenant has nothing in this store (no events, no data key): an act that would mark it
    for good (a shred) is refused rather than taken on a mistyped name."""

    code: ClassVar[str | None] = "not_found"

    def __init__(self, tenant_id: str, doing: str) -> None:
        super().__init__(
            f"tenant {tenant_id!r} has no events and no data key in this store: nothing to"
            f" {doing} (is the name right?)"
        )
        self.tenant_id = tenant_id


class DataKeyUnavailableError(EncryptionError):
    """An encrypted payload whose data key is not there to read it: no master key configured,
    no key row for it, or a key wrapped by a master key this process does not have."""


class CiphertextError(EncryptionError):
    """An encrypted payload failed authentication: it was changed, or moved to another row."""


class KeyFileError(EncryptionError):
    """A file of exported data keys (``acci keys import``) is malformed, or a key in it does not
    unwrap with the configured master keys; nothing of it was imported."""

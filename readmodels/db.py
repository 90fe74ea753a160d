"""The read side's database boundary: the one module of ``readmodels/`` that names psycopg's
errors, and turns them into the read side's own (``readmodels/errors.py``).

Two questions are answered here and nowhere else: what a database error means for a query
(``translate``), and, for a projection writing its rows, whether the database is down (the
batch is retried as a whole) or refused this event's changes (the event is found and reported):
``applying_changes``. The event store has its own boundary (``eventstore/errors.py``); reads of
the event store raise its errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import psycopg
from psycopg import errors as pg_errors

from acci.readmodels.errors import ChangeRefusedError, ReadModelError, ReadModelUnavailableError

# The database failed, not the statement: a lost or closed connection, a timeout, a shutdown, a
# lock or serialization failure (OperationalError), or a transaction in a state no statement can
# fix (InternalError). Running the same statements again later may succeed.
_OUTAGES: Final = (psycopg.OperationalError, psycopg.InterfaceError, psycopg.InternalError)


def _message(exc: psycopg.Error) -> str:
    return exc.diag.message_primary or str(exc)


def translate(exc: psycopg.Error) -> ReadModelError:
    """Map a psycopg error to a ``ReadModelError`` (an outage: ``ReadModelUnavailableError``)."""
    message = _message(exc)
    if isinstance(exc, pg_errors.UndefinedTable | pg_errors.InvalidSchemaName):
        return ReadModelError(
            f"the read models are not set up in this database ({message}); run `acci db migrate`"
        )
    if isinstance(exc, _OUTAGES):
        return ReadModelUnavailableError(f"read models unavailable: {message}")
    return ReadModelError(f"read model error ({exc.sqlstate or type(exc).__name__}): {message}")


@contextmanager
def translated() -> Iterator[None]:
    """A block that talks to PostgreSQL: a psycopg error leaves it as a ``ReadModelError``."""
    try:
        yield
    except psycopg.Error as e:
        raise translate(e) from e


@contextmanager
def running_ddl(read_model: str, version: int) -> Iterator[None]:
    """A read model's own DDL runs here: PostgreSQL refusing it (a typo in the application's
    SQL) is a ``ReadModelError`` naming the read model and version; an outage stays one."""
    try:
        yield
    except psycopg.Error as e:
        if isinstance(e, _OUTAGES):
            raise translate(e) from e
        raise ReadModelError(
            f"read model {read_model!r}: the DDL of its version {version} was refused by"
            f" PostgreSQL ({e.sqlstate or type(e).__name__}): {_message(e)}"
        ) from e


@contextmanager
def applying_changes() -> Iterator[None]:
    """A block that writes a projection's row changes: an outage leaves it as
    ``ReadModelUnavailableError`` (retry the batch as a whole), any other database error as
    ``ChangeRefusedError`` (the changes were refused: find the event whose they are)."""
    try:
        yield
    except psycopg.Error as e:
        if isinstance(e, _OUTAGES):
            raise translate(e) from e
        raise ChangeRefusedError(_message(e)) from e

"""The read side's errors: what a query, a projection or a read model can end with.

Each carries a ``code`` the CLI and the query bus report (``acci`` prints ``error (<code>)``).
"""

from __future__ import annotations

from typing import ClassVar


class QueryError(Exception):
    """Root of every error a query can end with."""

    code: ClassVar[str] = "query"


class QueryValidationError(QueryError):
    """The query was malformed."""

    code: ClassVar[str] = "validation"


class QueryAuthorizationError(QueryError):
    """The principal asking may not read what the query asks for (another tenant's data)."""

    code: ClassVar[str] = "authorization"


class NotFoundError(QueryError):
    """The thing asked for does not exist (in this tenant)."""

    code: ClassVar[str] = "not_found"


class ProjectionError(QueryError):
    """A projection could not apply an event to its read model."""

    code: ClassVar[str] = "projection"


class ReadModelError(QueryError):
    """The read models could not be read or written (readmodels/db.py says why)."""

    code: ClassVar[str] = "read_model"


class ReadModelUnavailableError(ReadModelError):
    """The read models' database could not be reached or did not answer; retrying may succeed.

    For a projection: the batch is retried as a whole, no event is to blame.
    """


class ChangeRefusedError(ProjectionError):
    """The database refused an event's row changes (a constraint, a type, a missing table).

    Caused by the database's own error (``__cause__``), whose type and message name the reason.
    """


class UnknownReadModelError(NotFoundError):
    """No installed read model has the name asked for; the message lists those there are."""

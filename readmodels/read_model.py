"""A read model: one declaration of everything about it, and the names its versions' tables take.

A read model is its row types (SQLModel, one per table: the single statement of each table's
shape), its DDL for each version, its projection and its queries. Version N's tables are
``read_models.<table>_v<N>``; queries read ``read_models.<table>``, a view of the live version's
table (``readmodels/versions.py`` creates them and switches the view). The projection writes
logical table names; the engine writes them to the version its checkpoint names.

DDL is written with a ``{table}`` placeholder for each of its tables (``CREATE TABLE {users}
(…)``, ``CREATE INDEX ON {users} (…)``), filled with the version's qualified table names; a
literal brace is doubled. It runs once, when a version's tables are created, in one transaction.
"""

from __future__ import annotations

import re
import string
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import sqlmodel
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import BigInteger, Column, DateTime
from sqlmodel import SQLModel

from acci.readmodels.changes.change import SCHEMA
from acci.readmodels.projections import Projection
from acci.readmodels.queries import Query
from acci.readmodels.versioned import physical_table

QueryHandler = Callable[[Any], Awaitable[Any]]
HandlerFactory = Callable[[AsyncConnectionPool], QueryHandler]
"""Given the read models' pool, the coroutine function that answers one query type."""

_TABLE: Final = re.compile(r"[a-z][a-z0-9_]{0,50}")
MAX_VERSION: Final = 9_999


class ReadModelDeclarationError(ValueError):
    """A read model's declaration is inconsistent; the message says what and where."""


@dataclass(frozen=True)
class ReadModel:
    """Everything about one read model; its name is its projection's.

    ``rows`` are the current version's row types, one per table the projection writes (their
    ``__tablename__`` is the logical table name, their schema ``read_models``). ``ddl`` maps each
    version to the SQL that creates its tables; the current version is the highest.
    ``queries`` maps each query type to a factory that, given the read models' pool, returns
    the coroutine function answering it; its SQL reads the stable names.
    """

    projection: type[Projection]
    rows: Sequence[type[SQLModel]]
    ddl: Mapping[int, str]
    queries: Mapping[type[Query[Any]], HandlerFactory] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.projection.name

    @property
    def version(self) -> int:
        """The version this code declares as current (its highest)."""
        return max(self.ddl)

    @property
    def tables(self) -> tuple[str, ...]:
        """The logical table names, sorted."""
        return tuple(sorted(self.projection.tables))

    def ddl_for(self, version: int) -> str:
        """The DDL version ``version`` is created with: its own, or the newest declared before
        it (a rebuild into a new version of an unchanged shape)."""
        declared = [v for v in self.ddl if v <= version]
        if not declared:
            raise ReadModelDeclarationError(
                f"read model {self.name!r} declares no DDL for version {version} or below"
            )
        return self.ddl[max(declared)]

    def create_statement(self, version: int, *, suffix: str = "") -> sql.Composed:
        """Version ``version``'s DDL with its tables' names filled in (``suffix`` appended: a
        scratch copy of the version's tables)."""
        names = {
            t: sql.Identifier(SCHEMA, physical_table(t, version) + suffix) for t in self.tables
        }
        return sql.SQL(self.ddl_for(version)).format(**names)

    def problem(self) -> str | None:
        """What is wrong with the declaration on its own (None: nothing)."""
        tables = set(self.projection.tables)
        for table in tables:
            if not _TABLE.fullmatch(table):
                return f"read-model table name {table!r} is not a short lower-case SQL identifier"
        row_tables = {str(getattr(row, "__tablename__", "")) for row in self.rows}
        if row_tables != tables:
            return (
                f"read model {self.name!r}: its row types are for tables {sorted(row_tables)},"
                f" its projection writes {sorted(tables)}"
            )
        if not self.ddl:
            return f"read model {self.name!r} declares no DDL"
        for version, ddl in self.ddl.items():
            if isinstance(version, bool) or not isinstance(version, int):
                return f"read model {self.name!r}: DDL version {version!r} is not an integer"
            if not 1 <= version <= MAX_VERSION:
                return f"read model {self.name!r}: DDL version {version} is not 1..{MAX_VERSION}"
            fields = _placeholders(ddl)
            if fields is None:
                return f"read model {self.name!r}: the DDL of version {version} has a stray brace"
            if fields != tables:
                return (
                    f"read model {self.name!r}: the DDL of version {version} names tables"
                    f" {sorted(fields)} as placeholders, the projection writes {sorted(tables)}"
                )
        return None


def timestamptz() -> Any:
    """A row type's ``timestamptz NOT NULL`` column (a new Column each call: a table owns it)."""
    return sqlmodel.Field(sa_column=Column(DateTime(timezone=True), nullable=False))


def bigint() -> Any:
    """A row type's ``bigint NOT NULL`` column."""
    return sqlmodel.Field(sa_column=Column(BigInteger, nullable=False))


def rebuild_checkpoint(name: str, version: int) -> str:
    """The checkpoint (projection name) a rebuild of ``name`` into ``version`` moves."""
    return f"{name}@v{version}"


def is_rebuild_checkpoint(checkpoint: str) -> bool:
    """Whether ``checkpoint`` is a rebuild's (``rebuild_checkpoint``), not a projection's."""
    return "@v" in checkpoint


def _placeholders(ddl: str) -> set[str] | None:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(ddl) if f is not None}
    except ValueError:
        return None

"""Numbered SQL migrations, applied once each, safe from two processes at once.

A migration may have a data step (``_DATA_STEPS``): Python that moves data in transactions of
its own before the migration's SQL runs, resumable if killed (it picks up where it stopped).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import psycopg
from psycopg_pool import AsyncConnectionPool

from acci.eventstore import relayout
from acci.eventstore.errors import EventStoreError, translated

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every ACCI process.
_MIGRATION_LOCK_KEY = 0x41434349_4D494752  # "ACCIMIGR"
_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

# Data moves, by the migration they come before; each gets the connection holding the lock.
_DATA_STEPS: Final[dict[int, Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]]] = {
    8: relayout.move,
}

# Migrations whose text changed after release without changing what they do to a database that
# applied them: the checksums they had, accepted as theirs. 004 no longer creates the built-in
# read models' tables (each read model creates its own, readmodels/versions.py, and adopts tables
# an older 004 made).
_AMENDED: Final[dict[int, frozenset[str]]] = {
    4: frozenset({"1d66c8fc8f19867c59f04e8c65a8c920bcd49d6dcc6dac9f73b2db6d6431b4d7"}),
}

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS public.acci_schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migrations shipped in ``eventstore/migrations/``, in order."""
    found = []
    for entry in (resources.files("acci.eventstore") / "migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


async def migrate(pool: AsyncConnectionPool, *, up_to: int | None = None) -> list[Migration]:
    """Apply the pending migrations in order, each in its own transaction; returns those applied.

    ``up_to`` stops after that version (a test of an upgrade builds the older schema with it).

    A session-level lock serialises concurrent migrators across the data steps' transactions;
    the loser then sees everything applied.
    """
    applied: list[Migration] = []
    with translated():
        async with pool.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
            try:
                await conn.execute(_CREATE_TABLE)
                cur = await conn.execute(
                    "SELECT version, checksum FROM public.acci_schema_migrations"
                )
                done = {version: checksum for version, checksum in await cur.fetchall()}
                for migration in available_migrations():
                    if up_to is not None and migration.version > up_to:
                        break
                    if migration.version in done:
                        known = {migration.checksum, *_AMENDED.get(migration.version, ())}
                        if done[migration.version] not in known:
                            raise EventStoreError(
                                f"migration {migration.version:03d}_{migration.name} was changed"
                                " after it was applied; add a new migration instead"
                            )
                        continue
                    await _apply(conn, migration)
                    applied.append(migration)
            finally:
                if not conn.broken:
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))
    return applied


async def _apply(conn: psycopg.AsyncConnection[Any], migration: Migration) -> None:
    name = f"{migration.version:03d}_{migration.name}"
    step = _DATA_STEPS.get(migration.version)
    if step is not None:
        log.info("moving data for migration", extra={"migration": name})
        await step(conn)
    log.info("applying migration", extra={"migration": name})
    async with conn.transaction():
        await conn.execute(migration.sql.encode())
        await conn.execute(
            "INSERT INTO public.acci_schema_migrations (version, name, checksum)"
            " VALUES (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )

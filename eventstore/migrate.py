"""Numbered SQL migrations, applied once each, safe from two processes at once."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg_pool import AsyncConnectionPool

from eventstore.errors import EventStoreError, translate

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every ACCI process.
_MIGRATION_LOCK_KEY = 0x41434349_4D494752  # "ACCIMIGR"
_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

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
    for entry in (resources.files("eventstore") / "migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


async def migrate(pool: AsyncConnectionPool) -> list[Migration]:
    """Apply the pending migrations in one transaction; returns those it applied."""
    applied: list[Migration] = []
    try:
        async with pool.connection() as conn, conn.transaction():
            # Serialises concurrent migrators; the loser then sees everything applied.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            await conn.execute(_CREATE_TABLE)
            cur = await conn.execute("SELECT version, checksum FROM public.acci_schema_migrations")
            done = {version: checksum for version, checksum in await cur.fetchall()}
            for migration in available_migrations():
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise EventStoreError(
                            f"migration {migration.version:03d}_{migration.name} was changed "
                            "after it was applied; add a new migration instead"
                        )
                    continue
                log.info(
                    "applying migration",
                    extra={"migration": f"{migration.version:03d}_{migration.name}"},
                )
                await conn.execute(migration.sql.encode())
                await conn.execute(
                    "INSERT INTO public.acci_schema_migrations (version, name, checksum)"
                    " VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
                applied.append(migration)
    except psycopg.Error as e:
        raise translate(e) from e
    return applied

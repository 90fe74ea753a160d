"""The installed applications' own read-model tables, created at start from their declarations.

ACCI's own tables come from its numbered migrations (``eventstore/migrations``); an application
declares each of its tables with idempotent DDL (``Application.read_models``), run here at every
start, one transaction per application, holding an advisory lock so that two processes starting
at once do not race (``CREATE … IF NOT EXISTS`` alone is not safe from that).
"""

from __future__ import annotations

import logging
from typing import Final

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from acci.readmodels.db import translated
from acci.readmodels.installed import read_model_tables

log = logging.getLogger(__name__)

# Not the migrations' own key: a transaction-level lock, held while one process creates tables.
_LOCK: Final = sql.SQL("SELECT pg_advisory_xact_lock(1094927177, 1380795715)")  # ("ACCI", "RMDL")


async def create_declared_tables(pool: AsyncConnectionPool) -> list[str]:
    """Run every installed application's read-model DDL; returns the tables it covered."""
    by_app: dict[str, list[tuple[str, str]]] = {}
    for table, (app, ddl) in sorted(read_model_tables().items()):
        if ddl is not None:
            by_app.setdefault(app, []).append((table, ddl))
    done = []
    for app, tables in by_app.items():
        with translated():
            async with pool.connection() as conn, conn.transaction():
                await conn.execute(_LOCK)
                for table, ddl in tables:
                    # The application's own code declares it (never input): run as written.
                    await conn.execute(sql.SQL(ddl))
                    done.append(table)
        names = [table for table, _ in tables]
        log.debug("read-model tables ready", extra={"application": app, "tables": names})
    return done

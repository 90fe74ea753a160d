"""The database made ready at start: ACCI's migrations, then every installed read model's tables.

ACCI's own tables (events, checkpoints, dead letters, versions) come from its numbered
migrations (``eventstore/migrations``); each read model's tables come from its own declaration:
each installed read model is given a live version (``readmodels/versions.py``), adopting the
tables an older ACCI made or creating its current version's.
"""

from __future__ import annotations

import logging

from psycopg_pool import AsyncConnectionPool

from acci.eventstore.migrate import Migration, migrate
from acci.readmodels.installed import read_models
from acci.readmodels.versions import ensure_read_models

log = logging.getLogger(__name__)


async def prepare_database(pool: AsyncConnectionPool) -> list[Migration]:
    """Apply the migrations not yet applied, then give every installed read model a live
    version; returns the migrations applied. Safe from two processes at once."""
    applied = await migrate(pool)
    await create_read_models(pool)
    return applied


async def create_read_models(pool: AsyncConnectionPool) -> list[str]:
    """Give every installed read model a live version; returns the read models covered."""
    models = read_models()
    await ensure_read_models(pool, models)
    names = [m.name for m in models]
    log.debug("read models ready", extra={"read_models": names})
    return names

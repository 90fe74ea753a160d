"""Migrations: applied once, recorded, safe twice and from two processes at once."""

from __future__ import annotations

import asyncio

import pytest

from acci.eventstore.db import create_pool
from acci.eventstore.errors import EventStoreError
from acci.eventstore.migrate import available_migrations, migrate


async def test_migrating_again_applies_nothing(database_url: str) -> None:
    async with create_pool(database_url, min_size=1, max_size=2) as pool:
        first = await migrate(pool)
        again = await migrate(pool)
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT version FROM public.acci_schema_migrations ORDER BY version"
            )
            recorded = [row[0] for row in await cur.fetchall()]
    assert [m.version for m in first] == [m.version for m in available_migrations()]
    assert again == []
    assert recorded == [m.version for m in available_migrations()]


async def test_two_migrators_at_once_apply_each_migration_once(database_url: str) -> None:
    async with create_pool(database_url, min_size=1, max_size=2) as pool:
        async with pool.connection() as conn:
            await conn.execute("DROP SCHEMA event_store, snapshots, subscriptions CASCADE")
            await conn.execute("DROP TABLE public.acci_schema_migrations")
    pools = [create_pool(database_url, min_size=1, max_size=1) for _ in range(2)]
    for p in pools:
        await p.open()
    try:
        results = await asyncio.gather(*(migrate(p) for p in pools))
    finally:
        for p in pools:
            await p.close()
    assert sorted(len(r) for r in results) == [0, len(available_migrations())]


async def test_a_migration_changed_after_it_was_applied_is_refused(database_url: str) -> None:
    async with create_pool(database_url, min_size=1, max_size=1) as pool:
        await migrate(pool)
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE public.acci_schema_migrations SET checksum = 'edited' WHERE version = 1"
            )
        with pytest.raises(EventStoreError, match="was changed after it was applied"):
            await migrate(pool)

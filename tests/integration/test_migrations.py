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


async def test_a_database_migrated_before_migration_004_was_amended_is_accepted(
    database_url: str,
) -> None:
    """004 once created the built-in read models' tables too: its old checksum stays valid
    (the tables it made are adopted: tests/integration/test_read_model_versions.py)."""
    async with create_pool(database_url, min_size=1, max_size=1) as pool:
        async with pool.connection() as conn:
            for m in available_migrations():  # as applied (an earlier test edits one)
                await conn.execute(
                    "UPDATE public.acci_schema_migrations SET checksum = %s WHERE version = %s",
                    (m.checksum, m.version),
                )
        await migrate(pool)
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE public.acci_schema_migrations SET checksum = %s WHERE version = 4",
                ("1d66c8fc8f19867c59f04e8c65a8c920bcd49d6dcc6dac9f73b2db6d6431b4d7",),
            )
        assert await migrate(pool) == []

"""Read-model rows written straight into PostgreSQL, and a real Redis, for the query tests."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.records import Position

REDIS_URL = os.environ.get("ACCI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    """A fixed instant, ``minutes`` after T0."""
    return T0 + timedelta(minutes=minutes)


async def put_tenant(
    pool: AsyncConnectionPool,
    tenant_id: str,
    *,
    name: str = "Acme",
    status: str = "active",
    user_count: int = 0,
    settings: dict[str, Any] | None = None,
    created_at: datetime = T0,
    last_updated: datetime = T0,
    version: int = 1,
    conn: AsyncConnection[Any] | None = None,
) -> None:
    """Insert or replace a tenant row (in ``conn``'s transaction if given)."""
    statement = (
        "INSERT INTO read_models.tenants (tenant_id, name, status, user_count, settings,"
        " created_at, last_updated, version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (tenant_id) DO UPDATE SET name = excluded.name, status = excluded.status,"
        " user_count = excluded.user_count, settings = excluded.settings,"
        " created_at = excluded.created_at, last_updated = excluded.last_updated,"
        " version = excluded.version"
    )
    params = (
        tenant_id,
        name,
        status,
        user_count,
        json.dumps(settings or {}),
        created_at,
        last_updated,
        version,
    )
    await _execute(pool, conn, statement, params)


async def put_user(
    pool: AsyncConnectionPool,
    tenant_id: str,
    user_id: str,
    *,
    email: str,
    display_name: str = "Someone",
    roles: list[str] | None = None,
    status: str = "active",
    created_at: datetime = T0,
    last_updated: datetime = T0,
    version: int = 1,
) -> None:
    """Insert or replace a user row."""
    statement = (
        "INSERT INTO read_models.users (tenant_id, user_id, email, display_name, roles, status,"
        " created_at, last_updated, version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (tenant_id, user_id) DO UPDATE SET email = excluded.email,"
        " display_name = excluded.display_name, roles = excluded.roles,"
        " status = excluded.status, last_updated = excluded.last_updated,"
        " version = excluded.version"
    )
    params = (
        tenant_id,
        user_id,
        email,
        display_name,
        sorted(roles or ["member"]),
        status,
        created_at,
        last_updated,
        version,
    )
    await _execute(pool, None, statement, params)


async def put_activity(
    pool: AsyncConnectionPool, tenant_id: str, event_type: str, count: int, last: datetime
) -> None:
    """Insert or replace one (tenant, event type) count."""
    statement = (
        "INSERT INTO read_models.tenant_activity (tenant_id, event_type, event_count,"
        " last_event_at) VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, event_type)"
        " DO UPDATE SET event_count = excluded.event_count, last_event_at = excluded.last_event_at"
    )
    await _execute(pool, None, statement, (tenant_id, event_type, count, last))


async def set_checkpoint(
    pool: AsyncConnectionPool,
    projection: str,
    position: Position,
    *,
    status: str = "running",
    last_error: str | None = None,
    conn: AsyncConnection[Any] | None = None,
) -> None:
    """Move a projection's checkpoint (in ``conn``'s transaction if given)."""
    statement = (
        "INSERT INTO read_models.checkpoints (projection, transaction_id, global_position,"
        " status, last_error, updated_at) VALUES (%s, %s, %s, %s, %s, now())"
        " ON CONFLICT (projection) DO UPDATE SET transaction_id = excluded.transaction_id,"
        " global_position = excluded.global_position, status = excluded.status,"
        " last_error = excluded.last_error, updated_at = excluded.updated_at"
    )
    params = (projection, *position, status, last_error)
    await _execute(pool, conn, statement, params)


async def delete_checkpoint(pool: AsyncConnectionPool, projection: str) -> None:
    await _execute(
        pool, None, "DELETE FROM read_models.checkpoints WHERE projection = %s", (projection,)
    )


async def _execute(
    pool: AsyncConnectionPool,
    conn: AsyncConnection[Any] | None,
    statement: str,
    params: tuple[Any, ...],
) -> None:
    if conn is not None:
        await conn.execute(statement, params)
        return
    async with pool.connection() as own:
        await own.execute(statement, params)


def require_redis(url: str = REDIS_URL) -> None:
    """Fail (never skip) when Redis does not answer."""
    try:
        with redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as e:
        pytest.fail(
            f"Redis is not reachable at {url}: {e}\n"
            "Start it (see README, 'Services') - the tests never skip a missing service.",
            pytrace=False,
        )


def delete_keys(prefix: str, url: str = REDIS_URL) -> None:
    """Remove every key under ``prefix:`` (a test's own namespace)."""
    with redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)

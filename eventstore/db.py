"""Connections to PostgreSQL: the database itself, the pool, and per-connection setup."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool
from pydantic_core import from_json

from acci.eventstore.errors import translate

XID8_OID = 5069


class Xid8Loader(Loader):
    """Loads ``xid8`` (a 64-bit transaction id) as a Python int."""

    def load(self, data: bytes | bytearray | memoryview) -> int:
        return int(bytes(data))


def conninfo(
    database_url: str, *, idle_in_transaction_timeout_ms: int, statement_timeout_ms: int
) -> str:
    """The URL plus the session settings every ACCI connection runs with."""
    options = (
        f"-c idle_in_transaction_session_timeout={int(idle_in_transaction_timeout_ms)}"
        f" -c statement_timeout={int(statement_timeout_ms)}"
        " -c application_name=acci"
    )
    return make_conninfo(database_url, options=options)


async def ensure_database(database_url: str) -> bool:
    """Create the URL's database if it does not exist; True if it was created."""
    params = conninfo_to_dict(database_url)
    name = str(params.get("dbname") or "postgres")
    params["dbname"] = "postgres"
    try:
        async with await psycopg.AsyncConnection.connect(
            make_conninfo("", **params), autocommit=True
        ) as conn:
            cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if await cur.fetchone():
                return False
            try:
                await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:
                return False  # another process won the race
            return True
    except psycopg.Error as e:
        raise translate(e) from e


async def refusal(database_url: str, *, connect_timeout: float) -> str | None:
    """PostgreSQL's own reason if it answers and refuses this URL (no such database or role, a
    wrong password); None if it lets the connection in, or does not answer (yet)."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            database_url, connect_timeout=max(1, round(connect_timeout))
        )
    except psycopg.OperationalError as e:
        line = next((line for line in str(e).splitlines() if "FATAL:" in line), None)
        return None if line is None else line.split("FATAL:", 1)[1].strip()
    await conn.close()
    return None


def json_loads(data: str | bytes) -> Any:
    """A ``json``/``jsonb`` value as Python data, the same as ``json.loads`` makes of it.

    Parsed by pydantic's JSON parser (jiter, in Rust: about 5x ``json.loads`` on events' data
    and metadata, the largest part of reading the log). It makes the same integers (beyond
    64 bits too; both refuse over 4,300 digits), floats and key order as ``json.loads``. What
    it refuses (a lone surrogate escape, which only a plain ``json`` column holds; nesting
    deeper than its limit) goes to ``json.loads``, which reads or fails as before.
    """
    try:
        return from_json(data, cache_strings="keys")
    except ValueError:
        return json.loads(data)


async def _configure(conn: psycopg.AsyncConnection[object]) -> None:
    conn.adapters.register_loader(XID8_OID, Xid8Loader)
    set_json_loads(json_loads, conn)


def create_pool(
    database_url: str,
    *,
    min_size: int = 2,
    max_size: int = 16,
    idle_in_transaction_timeout_ms: int = 30_000,
    statement_timeout_ms: int = 60_000,
    open: bool = False,
    pool_class: type[AsyncConnectionPool] = AsyncConnectionPool,
) -> AsyncConnectionPool:
    """An autocommit connection pool; open it with ``await pool.open()`` or ``async with``."""
    return pool_class(
        conninfo(
            database_url,
            idle_in_transaction_timeout_ms=idle_in_transaction_timeout_ms,
            statement_timeout_ms=statement_timeout_ms,
        ),
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True},
        configure=_configure,
        open=open,
        name="acci",
    )

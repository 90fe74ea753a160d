"""``apply_changes`` against one statement per change: same rows, same success or failure.

``apply_changes`` regroups a batch into a few set-based statements and merges a row's changes
(``readmodels/changes/planner.py`` and ``merging.py``); its promise is the effect of running
each change's own ``statement`` in order, failing where that would fail (so the runner can find
and park the event whose change the database refuses). These tests run random change lists both
ways, each in a transaction rolled back afterwards, over a table with most column types, NOT
NULL and CHECK constraints, and compare. ``ACCI_TEST_FUZZ_CASES`` sets how many random lists
each run tries (600).
"""

from __future__ import annotations

import os
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from acci.readmodels.changes import (
    Change,
    Delete,
    MissingRowError,
    Update,
    Upsert,
    apply_changes,
    statement,
)

_TABLE = """
CREATE TABLE read_models.change_fuzz (
    k text NOT NULL,
    k2 integer NOT NULL,
    s text NOT NULL,
    n integer,
    b bigint NOT NULL DEFAULT 0,
    c smallint CHECK (c >= 0),
    f double precision,
    j jsonb,
    a text[] NOT NULL DEFAULT '{}',
    t timestamptz,
    u uuid,
    PRIMARY KEY (k, k2),
    CHECK (n IS NULL OR b >= n)
)
"""

_CASES = int(os.environ.get("ACCI_TEST_FUZZ_CASES", "600"))
_AT = datetime(2026, 1, 1, tzinfo=UTC)
# Per column: values that fit it, then values that may not (out of range, at a limit an
# increment takes over, NULL where NOT NULL, what JSON cannot carry).
_VALUES: dict[str, tuple[list[Any], list[Any]]] = {
    "s": (["a", "b", "é", ""], [None, "x\x00y", 7]),
    "n": ([0, 1, -1, None], [2**31 - 1, -(2**31), 2**31, True, 1.5]),
    "b": ([0, 5, 100, 2**40], [2**63 - 1, -(2**63), 2**63, None]),
    "c": ([0, 1, None], [2**15 - 1, -1, 2**15]),
    "f": ([0.5, 3, -2.25, None], [float("inf"), float("nan")]),
    # JSON cannot hold a datetime or a set in a jsonb value: refused both ways, never written.
    "j": (
        [{"x": 1}, {}, {"n": [1, "two"]}, None],
        [{"bad": "a\x00"}, "text", [1], {"when": _AT}, {"ids": {1, 2}}],
    ),
    "a": ([["a", "b"], [], ["b", "a"]], [None, ["a", None]]),
    # Any offset, a negative one and one with seconds (a zone's local mean time of old) too,
    # lands as the instant a parameter makes of it.
    "t": (
        [
            _AT,
            _AT + timedelta(hours=1),
            datetime(2026, 1, 1),
            None,
            _AT.replace(microsecond=5),
            datetime(2026, 6, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
            datetime(1890, 1, 1, tzinfo=timezone(timedelta(seconds=561))),
        ],
        ["2026-01-02T00:00Z"],
    ),
    "u": ([uuid.UUID(int=1), "00000000-0000-0000-0000-000000000002", None], ["not a uuid"]),
}
_STEPS: dict[str, tuple[list[Any], list[Any]]] = {
    "n": ([1, 2, -1, -3, 0], [2**31 - 1, -(2**31), 2**31]),
    "b": ([1, 7, 2**40], [2**63 - 1, 2**63, -(2**62)]),
    "c": ([1, 2], [-1, 2**15 - 1, 2**15, True]),
}
_ITEMS = (["a", "b", "c", "é"], ["x\x00", None])


def _pick(rng: random.Random, options: tuple[list[Any], list[Any]], bad: float) -> Any:
    """A value that fits, or (with probability ``bad``) one that may not."""
    choices = options[1] if rng.random() < bad else options[0]
    return choices[rng.randrange(len(choices))]


def _columns(rng: random.Random, pool: list[str], most: int) -> list[str]:
    return rng.sample(pool, rng.randint(0, min(most, len(pool))))


def _change(rng: random.Random, bad: float, row: tuple[str, int]) -> Change:
    """A random change to ``row``."""
    key: dict[str, Any] = {"k": row[0], "k2": row[1]}
    if rng.random() < 0.5:
        key = {"k2": row[1], "k": row[0]}  # the key's columns in either order
    values = {c: _pick(rng, _VALUES[c], bad) for c in _columns(rng, list(_VALUES), 3)}
    free = [c for c in _STEPS if c not in values]
    increments = {c: _pick(rng, _STEPS[c], bad) for c in _columns(rng, free, 2)}
    roll = rng.random()
    if roll < 0.05:
        return Delete("change_fuzz", key)
    if roll < 0.45:
        values.setdefault("s", "new")
        return Upsert("change_fuzz", key, values, increments)
    sets: dict[str, dict[str, Any]] = {"add": {}, "remove": {}}
    if "a" not in values and rng.random() < 0.5:
        sets[rng.choice(["add", "remove"])]["a"] = _pick(rng, _ITEMS, bad)
    return Update(
        "change_fuzz",
        key,
        values,
        increments,
        add_to_set=sets["add"],
        remove_from_set=sets["remove"],
    )


def _rows_changed(rng: random.Random) -> list[tuple[str, int]]:
    """Which row each change of a list changes: a few rows, often one after another (the
    changes a row's merges are made of)."""
    rows = [(rng.choice("pqr"), rng.randint(1, 2))]
    for _ in range(rng.randint(0, 11)):
        rows.append(rows[-1] if rng.random() < 0.6 else (rng.choice("pqr"), rng.randint(1, 2)))
    return rows


async def _rows(conn: AsyncConnection[Any]) -> list[str]:
    cur = await conn.execute(
        "SELECT k, k2, s, n, b, c, f, j, a, t, u FROM read_models.change_fuzz ORDER BY k, k2"
    )
    return [repr(row) for row in await cur.fetchall()]  # repr: NaN equals itself


async def _outcome(
    conn: AsyncConnection[Any], changes: list[Change], *, batched: bool
) -> tuple[str, list[str]]:
    """What the changes leave (or that they failed), in a transaction rolled back after."""
    try:
        async with conn.transaction(force_rollback=True):
            await conn.execute(
                "INSERT INTO read_models.change_fuzz (k, k2, s, n, b, a) VALUES"
                " ('p', 1, 'seed', 1, 10, '{a}'), ('p', 2, 'seed', NULL, 0, '{}'),"
                " ('q', 1, 'seed', -5, 2, '{b,c}'), ('q', 2, 'seed', 0, 10, '{}')"
                " , ('r', 1, 'near limits', 2147483646, 9223372036854775806, '{}')"
            )
            if batched:
                await apply_changes(conn, changes)
            else:
                for change in changes:
                    cur = await conn.execute(*statement(change))
                    if isinstance(change, Update) and cur.rowcount == 0:
                        raise MissingRowError("no row")
            return "ok", await _rows(conn)
    except (psycopg.Error, MissingRowError, ValueError, TypeError, UnicodeError) as e:
        return f"failed ({type(e).__name__})", []


@pytest_asyncio.fixture(scope="module")
async def fuzz_table(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await conn.execute(_TABLE)


@pytest.mark.parametrize("bad", [0.0, 0.05, 0.2])
async def test_a_batch_has_the_effect_and_the_failure_of_its_changes_one_by_one(
    fuzz_table: None, pool: AsyncConnectionPool, bad: float
) -> None:
    rng = random.Random(f"change-fuzz-{bad}")
    async with pool.connection() as conn:
        for case in range(_CASES):
            changes = [_change(rng, bad, row) for row in _rows_changed(rng)]
            one_by_one = await _outcome(conn, changes, batched=False)
            batched = await _outcome(conn, changes, batched=True)
            assert (batched[0] == "ok") == (one_by_one[0] == "ok"), (case, changes, one_by_one)
            assert batched[1] == one_by_one[1], (case, changes)


async def _fails(pool: AsyncConnectionPool, changes: list[Change]) -> str:
    async with pool.connection() as conn:
        outcome, _ = await _outcome(conn, changes, batched=True)
    return outcome


async def test_a_value_the_column_refuses_fails_though_a_later_change_overwrites_it(
    fuzz_table: None, pool: AsyncConnectionPool
) -> None:
    key = {"k": "p", "k2": 1}
    changes: list[Change] = [
        Update("change_fuzz", key, {"s": None}),
        Update("change_fuzz", key, {"s": "fine"}),
    ]
    assert await _fails(pool, changes) == "failed (NotNullViolation)"


async def test_increments_that_overflow_on_the_way_fail_though_their_sum_fits(
    pool: AsyncConnectionPool,
) -> None:
    key = {"tenant_id": "near-the-limit"}
    row = {
        "name": "N",
        "status": "active",
        "user_count": 2**31 - 2,
        "settings": {},
        "created_at": _AT,
        "last_updated": _AT,
        "version": 1,
    }
    up, down = (Update("tenants", key, increments={"user_count": n}) for n in (2, -3))
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.NumericValueOutOfRange):
            async with conn.transaction(force_rollback=True):
                await apply_changes(conn, [Upsert("tenants", key, row), up, down])


async def test_a_value_a_check_refuses_fails_though_a_later_change_overwrites_it(
    pool: AsyncConnectionPool,
) -> None:
    # The CHECK on status is in the migration only (the row type does not say it): the reason
    # the planner reads what a table allows from the catalog.
    key = {"tenant_id": "checked", "user_id": "u"}
    row = {
        "email": "u@example.com",
        "display_name": "U",
        "roles": [],
        "status": "active",
        "created_at": _AT,
        "last_updated": _AT,
        "version": 1,
    }
    refused, fine = (Update("users", key, {"status": s}) for s in ("gone", "deactivated"))
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            async with conn.transaction(force_rollback=True):
                await apply_changes(conn, [Upsert("users", key, row), refused, fine])


async def test_changes_land_in_the_table_their_table_stands_for(
    fuzz_table: None, pool: AsyncConnectionPool
) -> None:
    # As a projection's changes reach its read model's version: named as the projection names
    # its table, applied to the version's (here "fuzz" stands for change_fuzz).
    tables = {"fuzz": "change_fuzz"}
    changes: list[Change] = [
        Upsert("fuzz", {"k": "m", "k2": n}, {"s": f"row {n}"}, {"b": n}) for n in range(3)
    ]
    changes.append(Update("fuzz", {"k": "m", "k2": 1}, increments={"b": 10}))
    async with pool.connection() as conn, conn.transaction(force_rollback=True):
        await apply_changes(conn, changes, tables)
        cur = await conn.execute(
            "SELECT k2, s, b FROM read_models.change_fuzz WHERE k = 'm' ORDER BY k2"
        )
        assert await cur.fetchall() == [(0, "row 0", 0), (1, "row 1", 11), (2, "row 2", 2)]
        missing = Update("fuzz", {"k": "m", "k2": 9}, {"s": "x"})
        with pytest.raises(MissingRowError, match=r"no row in read_models\.change_fuzz with key"):
            await apply_changes(conn, [missing, *changes[:1]], tables)

"""The audit log of command attempts (migration 013): record one, and read them back.

Every attempt is written in its own tenant's transaction (one statement that sets the tenant
first, as the append does), so the same code runs as the tables' owner or as acci_app, whose
row-level security then admits only the command's tenant. A read for one tenant is scoped
(``tenant_scope.scoped``); a read across tenants is only meaningful as the owner (acci_app sees
no row outside a tenant's transaction).

The table is append-only; an outcome already recorded for a command, tenant and principal is
not written twice (``record`` returns False), so a retried activity or a re-sent command adds
no row for an outcome it had before.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from psycopg import sql
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from acci.domain.principals import Principal
from acci.eventstore import validation
from acci.eventstore.errors import translated
from acci.eventstore.tenant_scope import scoped

Outcome = Literal["accepted", "duplicate", "rejected", "denied", "failed"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("accepted", "duplicate", "rejected", "denied", "failed")

# How a system principal (no tenant) is written: ``ops@system``.
SYSTEM: Final = "system"

# Text a client chose (a command type that names nothing, an error message quoting its input)
# is cut to these lengths: the log records what happened, not whatever was sent.
_MAX_TYPE: Final = 200
_MAX_REASON: Final = 2_000

_COLUMNS: Final = (
    "tenant_id",
    "principal_id",
    "principal_tenant",
    "principal_roles",
    "principal_kind",
    "command_type",
    "command_id",
    "aggregate_type",
    "aggregate_id",
    "outcome",
    "error_type",
    "reason",
    "workflow_id",
    "workflow_run_id",
)

# The tenant of the row comes from `scope` below, the other columns from the attempt.
_FROM_ROW: Final = tuple(c for c in _COLUMNS if c != "tenant_id")

# One statement that scopes its own transaction to the tenant, as the append and the load do
# (eventstore/append.py, loading.py): the row is selected from `scope`'s, so row-level security's
# check runs after the setting. A separate set_config, pipelined before the insert, cost the
# command path a pipeline's round of its own. Composed once, as text: composing on every execute
# cost about 0.15 ms of CPU per command.
_RECORD: Final = (
    sql.SQL(
        "WITH scope AS MATERIALIZED ("
        " SELECT set_config('acci.tenant_id', %(tenant_id)s, true) AS tenant_id)"
        " INSERT INTO audit.command_attempts ({columns}) SELECT scope.tenant_id, {values}"
        " FROM scope"
        " ON CONFLICT ON CONSTRAINT command_attempts_once DO NOTHING RETURNING id"
    )
    .format(
        columns=sql.SQL(", ").join(map(sql.Identifier, ("tenant_id", *_FROM_ROW))),
        values=sql.SQL(", ").join(map(sql.Placeholder, _FROM_ROW)),
    )
    .as_string(None)
)

_SELECT: Final = sql.SQL(
    "SELECT id, at, {columns} FROM audit.command_attempts WHERE {where}"
    " ORDER BY at DESC, id DESC LIMIT {limit}"
)


@dataclass(frozen=True, slots=True)
class CommandAttempt:
    """One attempt of a command and how it ended, as the command activity records it."""

    tenant_id: str
    command_id: uuid.UUID
    command_type: str
    outcome: Outcome
    principal: Principal | None = None
    aggregate_type: str | None = None
    aggregate_id: str | None = None
    error_type: str | None = None
    reason: str | None = None
    workflow_id: str | None = None
    workflow_run_id: str | None = None

    def row(self) -> dict[str, Any]:
        """The row's column values."""
        who = self.principal
        return {
            "tenant_id": self.tenant_id,
            "principal_id": who.id if who else None,
            "principal_tenant": who.tenant_id if who else None,
            "principal_roles": sorted(who.roles) if who else [],
            "principal_kind": who.kind if who else None,
            "command_type": self.command_type[:_MAX_TYPE],
            "command_id": self.command_id,
            "aggregate_type": self.aggregate_type,
            "aggregate_id": self.aggregate_id,
            "outcome": self.outcome,
            "error_type": self.error_type,
            "reason": None if self.reason is None else self.reason[:_MAX_REASON],
            "workflow_id": self.workflow_id,
            "workflow_run_id": self.workflow_run_id,
        }


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A recorded attempt, as read back."""

    id: int
    at: datetime
    tenant_id: str
    principal_id: str | None
    principal_tenant: str | None
    principal_roles: list[str]
    principal_kind: str | None
    command_type: str
    command_id: uuid.UUID
    aggregate_type: str | None
    aggregate_id: str | None
    outcome: str
    error_type: str | None
    reason: str | None
    workflow_id: str | None
    workflow_run_id: str | None

    @property
    def principal(self) -> str:
        """``id@tenant`` (``id@system``), or ``(none)`` for a command that named no one."""
        if self.principal_id is None:
            return "(none)"
        return f"{self.principal_id}@{self.principal_tenant or SYSTEM}"


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which entries to read: one tenant's (else all the connection may see), one principal's
    (``id``: in any tenant; ``id@tenant``, ``id@system``: split at the last ``@``), since a
    time, the newest ``limit``."""

    tenant_id: str | None = None
    principal: str | None = None
    since: datetime | None = None
    limit: int = 100
    outcomes: tuple[str, ...] = field(default=())


class AuditLog:
    """Writes and reads ``audit.command_attempts`` on a pool (the owner's or acci_app's)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def record(self, attempt: CommandAttempt) -> bool:
        """Append ``attempt`` in its tenant's transaction; False if that outcome of that
        command by that principal was recorded already."""
        validation.tenant_id(attempt.tenant_id)
        with translated():
            async with self._pool.connection() as conn:
                cur = await conn.execute(_RECORD, attempt.row())
                return await cur.fetchone() is not None

    async def entries(self, wanted: AuditFilter | None = None) -> list[AuditEntry]:
        """The entries ``wanted`` names, newest first."""
        wanted = wanted or AuditFilter()
        conditions: list[sql.Composable] = [sql.SQL("true")]
        params: dict[str, Any] = {}
        if wanted.tenant_id is not None:
            conditions.append(sql.SQL("tenant_id = %(tenant)s"))
            params["tenant"] = validation.tenant_id(wanted.tenant_id)
        if wanted.principal is not None:
            # Read as a principal is (domain/principals.py): the tenant follows the last '@',
            # so "ann@acme" is ann of acme, never a principal "ann@acme" of another tenant.
            ident, at, scope = wanted.principal.rpartition("@")
            if not at:
                conditions.append(sql.SQL("principal_id = %(who)s"))
                params["who"] = wanted.principal
            elif scope == SYSTEM:
                conditions.append(sql.SQL("principal_id = %(who)s AND principal_tenant IS NULL"))
                params["who"] = ident
            else:
                conditions.append(
                    sql.SQL("principal_id = %(who)s AND principal_tenant = %(who_tenant)s")
                )
                params |= {"who": ident, "who_tenant": scope}
        if wanted.since is not None:
            conditions.append(sql.SQL("at >= %(since)s"))
            params["since"] = wanted.since
        if wanted.outcomes:
            conditions.append(sql.SQL("outcome = ANY(%(outcomes)s)"))
            params["outcomes"] = list(wanted.outcomes)
        query = _SELECT.format(
            columns=sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
            where=sql.SQL(" AND ").join(conditions),
            limit=sql.Literal(max(1, int(wanted.limit))),
        )
        with translated():
            if wanted.tenant_id is not None:
                async with scoped(self._pool, wanted.tenant_id) as conn:
                    return await _fetch(conn, query, params)
            async with self._pool.connection() as conn:
                return await _fetch(conn, query, params)


async def _fetch(conn: Any, query: sql.Composed, params: dict[str, Any]) -> list[AuditEntry]:
    cur = conn.cursor(row_factory=class_row(AuditEntry))
    await cur.execute(query, params)
    return list(await cur.fetchall())

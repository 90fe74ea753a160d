"""Aggregate snapshots: the state at a stream version, under a state-schema version."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from psycopg_pool import AsyncConnectionPool

from acci.eventstore import validation
from acci.eventstore.cipher import is_sealed, is_sealed_text
from acci.eventstore.encryption import OFF, PayloadEncryption
from acci.eventstore.errors import translated
from acci.eventstore.tenant_scope import scoped

_SNAPSHOT_NAMESPACE: Final = uuid.UUID("5d0bb7a4-4e2c-4c1c-9a43-0d5a2f7f7c11")

# Idempotent on (tenant, aggregate, schema version, stream version): a retried snapshot job
# finds its row and does nothing.
_SAVE: Final = (
    "INSERT INTO snapshots.aggregate_snapshots (snapshot_id, aggregate_id, aggregate_type,"
    " sequence_number, schema_version, state, metadata, tenant_id)"
    " VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s) ON CONFLICT DO NOTHING RETURNING 1"
)

_LOAD: Final = (
    "SELECT aggregate_type, sequence_number, schema_version, state, metadata, created_at"
    " FROM snapshots.aggregate_snapshots"
    " WHERE tenant_id = %s AND aggregate_id = %s AND aggregate_type = %s AND schema_version = %s"
    " AND sequence_number <= %s ORDER BY sequence_number DESC LIMIT 1"
)


def snapshot_id_for(
    tenant_id: str, aggregate_type: str, aggregate_id: str, schema_version: int, version: int
) -> uuid.UUID:
    """A snapshot's id: the same snapshot always gets the same one (its state's sealing is
    bound to it, eventstore/cipher.py)."""
    return uuid.uuid5(
        _SNAPSHOT_NAMESPACE,
        f"{tenant_id}/{aggregate_type}/{aggregate_id}/{schema_version}/{version}",
    )


async def opened_state(
    encryption: PayloadEncryption,
    tenant_id: str,
    aggregate_type: str,
    aggregate_id: str,
    schema_version: int,
    version: int,
    state: Any,
) -> Any:
    """A stored snapshot's state (decoded, or jsonb text), opened if it was sealed; as it came
    otherwise. ``TenantKeyShreddedError`` for a shredded tenant's."""
    if not (is_sealed_text(state) if isinstance(state, str) else is_sealed(state)):
        return state
    snapshot_id = snapshot_id_for(tenant_id, aggregate_type, aggregate_id, schema_version, version)
    where = f"snapshot {snapshot_id} of {tenant_id}/{aggregate_type}/{aggregate_id}"
    return await encryption.open_snapshot(tenant_id, snapshot_id, state, where)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An aggregate's state as of ``version``, in state schema ``schema_version``."""

    tenant_id: str
    aggregate_id: str
    aggregate_type: str
    version: int
    schema_version: int
    state: dict[str, Any]
    metadata: dict[str, Any]
    created_at: datetime | None = None


class SnapshotStore:
    """Saves snapshots idempotently and finds the newest usable one."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        max_state_bytes: int = 4 * 1024 * 1024,
        encryption: PayloadEncryption = OFF,
    ) -> None:
        """``encryption`` seals the state of new snapshots (when on) and opens sealed ones."""
        self._pool = pool
        self._encryption = encryption
        self._max_state_bytes = max_state_bytes

    async def save(
        self,
        tenant_id: str,
        aggregate_id: str,
        aggregate_type: str,
        *,
        version: int,
        schema_version: int,
        state: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store a snapshot; False if that exact snapshot was already stored."""
        validation.tenant_id(tenant_id)
        validation.aggregate_id(aggregate_id)
        validation.type_name(aggregate_type, "aggregate type")
        validation.version(version, "snapshot version", minimum=1)
        validation.version(
            schema_version, "schema version", minimum=1, maximum=validation.MAX_SCHEMA_VERSION
        )
        limit = self._max_state_bytes
        state_json = validation.encode_json(state, limit=limit, what="snapshot state")
        meta_json = validation.encode_json(metadata or {}, limit=limit, what="snapshot metadata")
        snapshot_id = snapshot_id_for(
            tenant_id, aggregate_type, aggregate_id, schema_version, version
        )
        state_json = await self._encryption.seal_snapshot(tenant_id, snapshot_id, state_json)
        with translated():
            async with scoped(self._pool, tenant_id) as conn:
                cur = await conn.execute(
                    _SAVE,
                    (
                        snapshot_id,
                        aggregate_id,
                        aggregate_type,
                        version,
                        schema_version,
                        state_json,
                        meta_json,
                        tenant_id,
                    ),
                )
                return await cur.fetchone() is not None

    async def load(
        self,
        tenant_id: str,
        aggregate_id: str,
        aggregate_type: str,
        *,
        schema_version: int,
        at_or_below: int | None = None,
    ) -> Snapshot | None:
        """The newest snapshot of this schema at or below a version, if there is one."""
        validation.tenant_id(tenant_id)
        validation.aggregate_id(aggregate_id)
        validation.type_name(aggregate_type, "aggregate type")
        validation.version(
            schema_version, "schema version", minimum=1, maximum=validation.MAX_SCHEMA_VERSION
        )
        ceiling = (
            validation.MAX_VERSION
            if at_or_below is None
            else validation.version(at_or_below, "snapshot version")
        )
        with translated():
            async with scoped(self._pool, tenant_id) as conn:
                cur = await conn.execute(
                    _LOAD, (tenant_id, aggregate_id, aggregate_type, schema_version, ceiling)
                )
                row = await cur.fetchone()
        if row is None:
            return None
        aggregate_type, version, schema, state, metadata, created_at = row
        state = await opened_state(
            self._encryption,
            tenant_id,
            aggregate_type,
            aggregate_id,
            int(schema),
            int(version),
            state,
        )
        return Snapshot(
            tenant_id,
            aggregate_id,
            aggregate_type,
            int(version),
            int(schema),
            state,
            metadata,
            created_at,
        )

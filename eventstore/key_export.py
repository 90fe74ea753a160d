"""Tenants' data keys to a file and back: what restoring encrypted events into another database
needs besides the backup (``acci keys export`` / ``acci keys import``).

Logical backups hold events and snapshots sealed, as stored, and never the keys: restoring a
backup must not undo a shred. A key export holds every data key *wrapped* by its master key
(useless without that key, which never reaches the database or the file) and every shredded
key's tombstone. Importing never replaces a row: a tenant shredded in the target stays shredded,
and a tombstone in the file keeps the shred where the target has no row for it. Every wrapped
key is unwrapped (checked) before anything is written, and the rows go in one transaction: a
file that is malformed, or whose keys the configured master keys do not open, writes nothing.

An export made before a shred can bring the shredded key back into a database that has no row
for the tenant: keep key exports no longer than the erasure deadline allows, and export again
after a shred (the README says so).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, Self

import pydantic
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field, model_validator

from acci.domain.identifiers import TenantId
from acci.eventstore.errors import (
    CiphertextError,
    DataKeyUnavailableError,
    KeyFileError,
    translated,
)
from acci.eventstore.keys import KeyWrapper

FORMAT: Final = "acci-tenant-keys"

_EXPORT: Final = (
    "SELECT tenant_id, key_version, wrapped_key, master_key_id, created_at, rotated_at,"
    " shredded_at FROM event_store.tenant_keys WHERE %(tenant)s::text IS NULL"
    " OR tenant_id = %(tenant)s ORDER BY tenant_id, key_version"
)
# Never replaces a row: what the target holds (a live key, or a shred) stays.
_IMPORT: Final = (
    "INSERT INTO event_store.tenant_keys (tenant_id, key_version, wrapped_key, master_key_id,"
    " created_at, rotated_at, shredded_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (tenant_id, key_version) DO NOTHING RETURNING 1"
)


class ExportedKey(BaseModel):
    """One row of ``event_store.tenant_keys``: a wrapped data key (base64), or a tombstone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: TenantId
    key_version: int = Field(ge=1, le=2**31 - 1)
    wrapped_key: str | None = Field(max_length=1024)
    master_key_id: str = Field(min_length=1, max_length=200)
    created_at: datetime
    rotated_at: datetime | None = None
    shredded_at: datetime | None = None

    @model_validator(mode="after")
    def _key_or_tombstone(self) -> Self:
        if (self.wrapped_key is None) != (self.shredded_at is not None):
            raise ValueError("a key has either a wrapped key or a shredded_at, never both")
        return self

    def wrapped(self) -> bytes | None:
        """The wrapped key's bytes (None: shredded)."""
        if self.wrapped_key is None:
            return None
        try:
            return base64.b64decode(self.wrapped_key, validate=True)
        except binascii.Error as e:
            raise KeyFileError(
                f"tenant {self.tenant_id}'s key version {self.key_version} is not base64: {e}"
            ) from e


class KeyFile(BaseModel):
    """What ``acci keys export`` writes: its format, when, and the keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["acci-tenant-keys"] = FORMAT
    version: Literal[1] = 1
    exported_at: datetime
    keys: list[ExportedKey]

    @classmethod
    def parse(cls, text: str | bytes) -> KeyFile:
        """The file's contents, or ``KeyFileError`` saying what is wrong with them."""
        try:
            return cls.model_validate_json(text)
        except pydantic.ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'file'}: {error['msg']}"
                for error in e.errors(include_url=False)[:5]
            )
            raise KeyFileError(f"not an ACCI key export ({FORMAT}, version 1): {problems}") from e


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What ``import_keys`` did: rows added (live keys, tombstones), and rows the target held
    already (left as they were: its own key, or its shred)."""

    keys: int
    tombstones: int
    kept: int
    tenants: int


async def export_keys(pool: AsyncConnectionPool, tenant_id: str | None = None) -> KeyFile:
    """Every tenant's key rows (or one tenant's), wrapped as stored."""
    with translated():
        async with pool.connection() as conn:
            cur = await conn.execute(_EXPORT, {"tenant": tenant_id})
            rows = await cur.fetchall()
    keys = [
        ExportedKey(
            tenant_id=tenant,
            key_version=version,
            wrapped_key=None if wrapped is None else base64.b64encode(bytes(wrapped)).decode(),
            master_key_id=master_key_id,
            created_at=created_at,
            rotated_at=rotated_at,
            shredded_at=shredded_at,
        )
        for tenant, version, wrapped, master_key_id, created_at, rotated_at, shredded_at in rows
    ]
    return KeyFile(exported_at=datetime.now(UTC), keys=keys)


def check_unwrap(keys: Sequence[ExportedKey], wrapper: KeyWrapper) -> None:
    """``KeyFileError`` naming the first live key the wrapper's master keys do not open."""
    for key in keys:
        wrapped = key.wrapped()
        if wrapped is None:
            continue
        try:
            wrapper.unwrap(key.tenant_id, key.key_version, key.master_key_id, wrapped)
        except (DataKeyUnavailableError, CiphertextError) as e:
            raise KeyFileError(
                f"tenant {key.tenant_id}'s key version {key.key_version} cannot be opened with"
                f" the configured master keys ({e}); nothing was imported"
            ) from e


async def import_keys(
    pool: AsyncConnectionPool, wrapper: KeyWrapper, file: KeyFile
) -> ImportResult:
    """Add the file's rows the target does not hold, in one transaction, once every live key in
    it has been opened with the configured master keys."""
    check_unwrap(file.keys, wrapper)
    added = tombstones = 0
    with translated():
        async with pool.connection() as conn, conn.transaction():
            for key in file.keys:
                cur = await conn.execute(
                    _IMPORT,
                    (
                        key.tenant_id,
                        key.key_version,
                        key.wrapped(),
                        key.master_key_id,
                        key.created_at,
                        key.rotated_at,
                        key.shredded_at,
                    ),
                )
                if await cur.fetchone() is None:
                    continue
                if key.wrapped_key is None:
                    tombstones += 1
                else:
                    added += 1
    kept = len(file.keys) - added - tombstones
    return ImportResult(added, tombstones, kept, len({k.tenant_id for k in file.keys}))

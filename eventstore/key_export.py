"""Tenants' data keys to a file and back: what restoring encrypted events into another database
needs besides the backup (``acci keys export`` / ``acci keys import``).

Logical backups hold events and snapshots sealed, as stored, and never the keys: restoring a
backup must not undo a shred. A key export holds every data key *wrapped* by its master key
(useless without that key, which never reaches the database or the file) and every shredded
key's tombstone. Importing never replaces a row and never revives a shred: a tenant shredded in
the target stays shredded, and a tombstone in the file is carried where the target has no key
for the tenant. Where the two disagree (a different key under the same version, or a shred in
the file of a tenant whose key is live in the target) the import refuses, naming the tenants:
the operator decides (``acci tenant shred`` in the target, or another file). Every wrapped key
is unwrapped (checked) before anything is written, and the rows go in one transaction: a file
that is malformed, disagrees with the target, or whose keys the configured master keys do not
open writes nothing.

An export made before a shred can bring the shredded key back into a database that has no row
for the tenant: keep key exports no longer than the erasure deadline allows, and export again
after a shred (the README says so).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, Self

import pydantic
from psycopg_pool import AsyncConnectionPool
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from acci.domain.identifiers import TenantId
from acci.eventstore import validation
from acci.eventstore.errors import (
    CiphertextError,
    DataKeyUnavailableError,
    EventStoreValidationError,
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
# The target's rows of the file's tenants, locked until the import commits (a shred or a first
# encrypted write meanwhile waits, and is then seen by nobody's mistake).
_HERE: Final = (
    "SELECT tenant_id, key_version, wrapped_key, master_key_id FROM event_store.tenant_keys"
    " WHERE tenant_id = ANY(%s) FOR UPDATE"
)
_INSERT: Final = (
    "INSERT INTO event_store.tenant_keys (tenant_id, key_version, wrapped_key, master_key_id,"
    " created_at, rotated_at, shredded_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
SHOWN: Final = 5  # conflicts named in a refusal


class ExportedKey(BaseModel):
    """One row of ``event_store.tenant_keys``: a wrapped data key (base64), or a tombstone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: TenantId
    key_version: int = Field(ge=1, le=2**31 - 1)
    wrapped_key: str | None = Field(max_length=1024)
    master_key_id: str = Field(min_length=1, max_length=200)
    created_at: AwareDatetime
    rotated_at: AwareDatetime | None = None
    shredded_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _key_or_tombstone(self) -> Self:
        if (self.wrapped_key is None) != (self.shredded_at is not None):
            raise ValueError("a key has either a wrapped key or a shredded_at, never both")
        return self

    @property
    def slot(self) -> tuple[str, int]:
        return self.tenant_id, self.key_version

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
    exported_at: AwareDatetime
    keys: list[ExportedKey]

    @model_validator(mode="after")
    def _each_slot_once(self) -> Self:
        slots = [k.slot for k in self.keys]
        if len(set(slots)) != len(slots):
            twice = sorted({s for s in slots if slots.count(s) > 1})[:SHOWN]
            raise ValueError(f"keys listed more than once (tenant, version): {twice}")
        return self

    @classmethod
    def parse(cls, text: str | bytes) -> KeyFile:
        """The file's contents, or ``KeyFileError`` saying what is wrong with them."""
        try:
            return cls.model_validate_json(text)
        except pydantic.ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'file'}: {error['msg']}"
                for error in e.errors(include_url=False)[:SHOWN]
            )
            raise KeyFileError(f"not an ACCI key export ({FORMAT}, version 1): {problems}") from e


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What ``import_keys`` did: rows added (live keys, tombstones) and the tenants they are of,
    and the file's rows the target held already (the same key, or its own shred)."""

    keys: int
    tombstones: int
    kept: int
    tenants: int


async def export_keys(pool: AsyncConnectionPool, tenant_id: str | None = None) -> KeyFile:
    """Every tenant's key rows (or one tenant's), wrapped as stored; ``EventStoreValidationError``
    if there are none (an export that holds nothing must not pass for a key backup)."""
    if tenant_id is not None:
        validation.tenant_id(tenant_id)
    with translated():
        async with pool.connection() as conn:
            cur = await conn.execute(_EXPORT, {"tenant": tenant_id})
            rows = await cur.fetchall()
    if not rows:
        whose = f"of tenant {tenant_id!r}" if tenant_id else "in this database"
        raise EventStoreValidationError(
            f"no data keys {whose} to export (is ACCI_DATABASE_URL the tables' owner, and was"
            " encryption ever on?)"
        )
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


def _opened(wrapper: KeyWrapper, tenant: str, version: int, key_id: str, wrapped: bytes) -> bytes:
    try:
        return wrapper.unwrap(tenant, version, key_id, wrapped)
    except (DataKeyUnavailableError, CiphertextError) as e:
        raise KeyFileError(
            f"tenant {tenant}'s key version {version} cannot be opened with the configured"
            f" master keys ({e}); nothing was imported"
        ) from e


async def import_keys(
    pool: AsyncConnectionPool, wrapper: KeyWrapper, file: KeyFile
) -> ImportResult:
    """Add the file's rows the target does not hold, in one transaction, once every live key in
    it has been opened with the configured master keys and none disagrees with the target."""
    opened = {
        k.slot: _opened(wrapper, k.tenant_id, k.key_version, k.master_key_id, wrapped)
        for k in file.keys
        if (wrapped := k.wrapped()) is not None
    }
    added: list[ExportedKey] = []
    with translated():
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_HERE, (sorted({k.tenant_id for k in file.keys}),))
            here = {(t, v): (w, key_id) for t, v, w, key_id in await cur.fetchall()}
            conflicts = []
            for key in file.keys:
                problem = _disagreement(key, opened.get(key.slot), here, wrapper)
                if problem == "add":
                    added.append(key)
                elif problem:
                    conflicts.append(problem)
            if conflicts:
                raise KeyFileError(
                    f"the file disagrees with this database for {len(conflicts)} key(s):"
                    f" {'; '.join(conflicts[:SHOWN])}; nothing was imported"
                )
            for key in added:
                await conn.execute(
                    _INSERT,
                    (
                        *key.slot,
                        key.wrapped(),
                        key.master_key_id,
                        key.created_at,
                        key.rotated_at,
                        key.shredded_at,
                    ),
                )
    tombstones = sum(1 for k in added if k.wrapped_key is None)
    return ImportResult(
        keys=len(added) - tombstones,
        tombstones=tombstones,
        kept=len(file.keys) - len(added),
        tenants=len({k.tenant_id for k in added}),
    )


def _disagreement(
    key: ExportedKey,
    data_key: bytes | None,
    here: Mapping[tuple[str, int], tuple[bytes | None, str]],
    wrapper: KeyWrapper,
) -> str | None:
    """ "add" for a row to insert, None for one the target holds already (the same key, or a
    shred: a shred here is never revived), else what disagrees."""
    tenant = key.tenant_id
    shredded_here = any(w is None for (t, _), (w, _) in here.items() if t == tenant)
    live_here = any(w is not None for (t, _), (w, _) in here.items() if t == tenant)
    if key.slot in here:
        wrapped, key_id = here[key.slot]
        if wrapped is None:
            return None  # shredded here: stays shredded
        if data_key is None:
            return f"{tenant} is shredded in the file but its key is live here (shred it here)"
        if _opened(wrapper, tenant, key.key_version, key_id, bytes(wrapped)) != data_key:
            return f"{tenant} has another data key version {key.key_version} here"
        return None
    if data_key is None and live_here:
        return f"{tenant} is shredded in the file but its key is live here (shred it here)"
    if data_key is not None and shredded_here:
        return None  # a live key of a tenant shredded here: stays shredded
    return "add"

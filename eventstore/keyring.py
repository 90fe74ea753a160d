"""Tenants' data keys: created on a tenant's first encrypted write, cached unwrapped, shredded,
re-wrapped under a new master key (migration 014, ``event_store.tenant_keys``).

Tenant-scoped statements run under ``scoped`` (row-level security as ``acci_app``); shredding,
rotation and the status read every tenant's rows and are the owner's (cross-tenant) work.

Unwrapped keys are cached for ``cache_ttl`` seconds: a shred in another process takes effect
here within that time (this process's own ``shred`` forgets the key at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import AsyncConnectionPool

from acci.eventstore import validation
from acci.eventstore.errors import (
    DataKeyUnavailableError,
    TenantKeyShreddedError,
    UnknownTenantError,
    translated,
)
from acci.eventstore.keys import KeyWrapper, new_data_key
from acci.eventstore.tenant_scope import scoped, tenant_known

_SELECT: Final = (
    "SELECT tenant_id, key_version, wrapped_key, master_key_id FROM event_store.tenant_keys"
    " WHERE tenant_id = %s"
)
_SELECT_MANY: Final = (
    "SELECT tenant_id, key_version, wrapped_key, master_key_id FROM event_store.tenant_keys"
    " WHERE tenant_id = ANY(%s)"
)
# Two first appends at once: both insert, one row stays, and both read it back (the SELECT is
# a statement of its own: read committed, it sees the winner's row once the insert waited).
# Never for a tenant whose events are sealed already: its key is missing (a restore into a
# database its keys were not imported into), and a new key would leave them unreadable for good.
_CREATE: Final = (
    "INSERT INTO event_store.tenant_keys (tenant_id, key_version, wrapped_key, master_key_id)"
    " SELECT %(tenant)s, 1, %(wrapped)s, %(master_key_id)s WHERE NOT EXISTS (SELECT 1 FROM"
    " event_store.events WHERE tenant_id = %(tenant)s AND data ? '$enc')"
    " ON CONFLICT DO NOTHING"
)
_MISSING: Final = (
    "its events are sealed with a data key this database does not hold (restored without its"
    " keys? `acci keys import` them)"
)
_SHRED: Final = (
    "UPDATE event_store.tenant_keys SET wrapped_key = NULL, shredded_at = now()"
    " WHERE tenant_id = %s AND shredded_at IS NULL RETURNING key_version"
)
# A tenant that never had a key gets a shredded row all the same: no key can be created for it
# later by a first encrypted append.
_TOMBSTONE: Final = (
    "INSERT INTO event_store.tenant_keys (tenant_id, key_version, wrapped_key, master_key_id,"
    " shredded_at) VALUES (%s, 1, NULL, %s, now()) ON CONFLICT DO NOTHING"
)
# Sent by the shred's transaction, so delivered when it commits: every worker listening
# (workers/worker.py) forgets the tenant's cached key at once instead of within the TTL.
SHRED_CHANNEL: Final = "acci_key_shredded"
_ANNOUNCE: Final = "SELECT pg_notify(%s, %s)"
_EVENTS: Final = (
    "SELECT count(*), count(*) FILTER (WHERE NOT data ? '$enc') FROM event_store.events"
    " WHERE tenant_id = %s"
)
_TO_REWRAP: Final = (
    "SELECT tenant_id, key_version, wrapped_key, master_key_id FROM event_store.tenant_keys"
    " WHERE wrapped_key IS NOT NULL AND master_key_id <> %s"
    " ORDER BY tenant_id, key_version LIMIT %s FOR UPDATE SKIP LOCKED"
)
_REWRAP: Final = (
    "UPDATE event_store.tenant_keys SET wrapped_key = %s, master_key_id = %s, rotated_at = now()"
    " WHERE tenant_id = %s AND key_version = %s AND master_key_id = %s"
)
_STATUS: Final = (
    "SELECT master_key_id, shredded_at IS NOT NULL, count(*)"
    " FROM event_store.tenant_keys GROUP BY 1, 2 ORDER BY 1, 2"
)
# Tenants with a live key (a shredded tenant's rows hold no key any more).
_TENANTS: Final = (
    "SELECT count(DISTINCT tenant_id) FROM event_store.tenant_keys WHERE shredded_at IS NULL"
)

SHREDDED: Final = None
"""A key version that was shredded (in a tenant's cached versions)."""


@dataclass(frozen=True, slots=True)
class DataKey:
    """One unwrapped data key of a tenant."""

    tenant_id: str
    version: int
    aes: AESGCM = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    # version -> its key, or None (SHREDDED)
    versions: dict[int, DataKey | None]

    def current(self) -> DataKey | None:
        """The newest version's key (None: shredded, or no key yet: see ``versions``)."""
        return self.versions[max(self.versions)] if self.versions else None


@dataclass(frozen=True, slots=True)
class ShredResult:
    """What ``shred`` did: the key versions it destroyed (none: already shredded, or the tenant
    had no key), the tenant's events, and how many of them are stored in clear (written while
    encryption was off: still readable)."""

    tenant_id: str
    destroyed: tuple[int, ...]
    events: int
    clear_events: int


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """Data keys per master key: live keys (and their tenants), shredded keys."""

    current_master_key_id: str
    live: dict[str, int]
    shredded: int
    tenants: int

    @property
    def to_rewrap(self) -> int:
        """Live keys not yet wrapped by the current master key."""
        return sum(n for key_id, n in self.live.items() if key_id != self.current_master_key_id)


class KeyRing:
    """Finds, creates, caches, shreds and re-wraps tenants' data keys."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        wrapper: KeyWrapper,
        *,
        cache_ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._wrapper = wrapper
        self._ttl = cache_ttl
        self._clock = clock
        self._cache: dict[str, _Entry] = {}

    @property
    def pool(self) -> AsyncConnectionPool:
        """The pool the keys are read and written through."""
        return self._pool

    @property
    def wrapper(self) -> KeyWrapper:
        """What wraps and unwraps the data keys."""
        return self._wrapper

    def forget(self, tenant_id: str | None = None) -> None:
        """Drop the cached keys of a tenant (None: of every tenant)."""
        if tenant_id is None:
            self._cache.clear()
        else:
            self._cache.pop(tenant_id, None)

    async def for_writing(self, tenant_id: str) -> DataKey:
        """The tenant's current data key, created if it has none (race-safe)."""
        entry = await self._entry(tenant_id)
        if not entry.versions:
            entry = await self._create(tenant_id)
        key = entry.current()
        if key is None:
            raise TenantKeyShreddedError(tenant_id)
        return key

    async def for_reading(self, tenant_id: str, version: int) -> DataKey:
        """Version ``version`` of the tenant's data key; ``TenantKeyShreddedError`` if it was
        shredded, ``DataKeyUnavailableError`` if there is no such key."""
        return self.pick(tenant_id, (await self._entry(tenant_id)).versions, version)

    async def versions(self, tenant_id: str) -> dict[int, DataKey | None]:
        """Every version of the tenant's data key (None: shredded), as cached."""
        return (await self._entry(tenant_id)).versions

    @staticmethod
    def pick(tenant_id: str, versions: dict[int, DataKey | None], version: int) -> DataKey:
        """Version ``version`` of ``versions``, or the typed error saying why there is none."""
        if version not in versions:
            raise DataKeyUnavailableError(
                f"tenant {tenant_id} has no data key version {version} in this database: {_MISSING}"
            )
        key = versions[version]
        if key is None:
            raise TenantKeyShreddedError(tenant_id)
        return key

    async def load(self, tenant_ids: Iterable[str]) -> None:
        """Have the keys of these tenants cached (one query for all that are missing)."""
        now = self._clock()
        cache = self._cache
        missing = [t for t in set(tenant_ids) if t not in cache or cache[t].expires <= now]
        if len(missing) < 2:
            return  # one tenant's are read on first use, under its own scope
        with translated():
            async with self._pool.connection() as conn:
                cur = await conn.execute(_SELECT_MANY, (missing,))
                rows = await cur.fetchall()
        by_tenant: dict[str, list[Any]] = {}
        for row in rows:
            by_tenant.setdefault(row[0], []).append(row)
        # Tenants with no visible row are left to a scoped read (as acci_app, an unscoped read
        # sees nothing; as the owner, they have no key).
        for tenant_id, tenant_rows in by_tenant.items():
            self._cache[tenant_id] = self._unwrapped(tenant_rows)

    async def _entry(self, tenant_id: str) -> _Entry:
        entry = self._cache.get(tenant_id)
        if entry is not None and entry.expires > self._clock():
            return entry
        validation.tenant_id(tenant_id)
        with translated():
            async with scoped(self._pool, tenant_id) as conn:
                cur = await conn.execute(_SELECT, (tenant_id,))
                rows = await cur.fetchall()
        entry = self._cache[tenant_id] = self._unwrapped(rows)
        return entry

    async def _create(self, tenant_id: str) -> _Entry:
        wrapper = self._wrapper
        wrapped = wrapper.wrap(tenant_id, 1, new_data_key())
        with translated():
            async with scoped(self._pool, tenant_id) as conn:
                params = {
                    "tenant": tenant_id,
                    "wrapped": wrapped,
                    "master_key_id": wrapper.current_key_id,
                }
                await conn.execute(_CREATE, params)
                cur = await conn.execute(_SELECT, (tenant_id,))
                rows = await cur.fetchall()
        if not rows:
            raise DataKeyUnavailableError(f"tenant {tenant_id} has no data key: {_MISSING}")
        entry = self._cache[tenant_id] = self._unwrapped(rows)
        return entry

    def _unwrapped(self, rows: Iterable[Any]) -> _Entry:
        versions: dict[int, DataKey | None] = {}
        for tenant_id, version, wrapped, master_key_id in rows:
            if wrapped is None:
                versions[version] = SHREDDED
                continue
            key = self._wrapper.unwrap(tenant_id, version, master_key_id, bytes(wrapped))
            versions[version] = DataKey(tenant_id, version, AESGCM(key))
        return _Entry(self._clock() + self._ttl, versions)

    # -- the owner's work (cross-tenant role) ----------------------------------------------

    async def shred(self, tenant_id: str) -> ShredResult:
        """Destroy every data key of the tenant, at once and for good (its rows stay, marked);
        ``UnknownTenantError`` if the store has neither events nor a key of the tenant."""
        validation.tenant_id(tenant_id)
        with translated():
            async with self._pool.connection() as conn, conn.transaction():
                # A shred of a name the store does not know (a typo) would otherwise leave a
                # tombstone that refuses that name for good.
                if not await tenant_known(conn, tenant_id):
                    raise UnknownTenantError(tenant_id, "shred")
                cur = await conn.execute(_SHRED, (tenant_id,))
                destroyed = tuple(sorted(row[0] for row in await cur.fetchall()))
                await conn.execute(_TOMBSTONE, (tenant_id, self._wrapper.current_key_id))
                await conn.execute(_ANNOUNCE, (SHRED_CHANNEL, tenant_id))
                cur = await conn.execute(_EVENTS, (tenant_id,))
                events, clear = await cur.fetchone() or (0, 0)
        self.forget(tenant_id)
        return ShredResult(tenant_id, destroyed, int(events), int(clear))

    async def rotate(self, *, batch: int = 500) -> int:
        """Re-wrap every live data key not wrapped by the current master key; returns how many.

        One transaction per ``batch`` keys: an interrupted rotation keeps what it did and the
        next run goes on from there. Events and snapshots are not touched.
        """
        current = self._wrapper.current_key_id
        done = 0
        while True:
            with translated():
                async with self._pool.connection() as conn, conn.transaction():
                    cur = await conn.execute(_TO_REWRAP, (current, batch))
                    rows = await cur.fetchall()
                    for tenant_id, version, wrapped, old_id in rows:
                        key = self._wrapper.unwrap(tenant_id, version, old_id, bytes(wrapped))
                        rewrapped = self._wrapper.wrap(tenant_id, version, key)
                        await conn.execute(
                            _REWRAP, (rewrapped, current, tenant_id, version, old_id)
                        )
            done += len(rows)
            if len(rows) < batch:
                self.forget()
                return done

    async def status(self) -> KeyStatus:
        """How many data keys each master key wraps, and how many were shredded."""
        with translated():
            async with self._pool.connection() as conn:
                cur = await conn.execute(_STATUS)
                rows = await cur.fetchall()
                cur = await conn.execute(_TENANTS)
                tenants = int((await cur.fetchone() or (0,))[0])
        live: dict[str, int] = {}
        shredded = 0
        for master_key_id, is_shredded, keys in rows:
            if is_shredded:
                shredded += keys
            else:
                live[master_key_id] = live.get(master_key_id, 0) + keys
        return KeyStatus(self._wrapper.current_key_id, live, shredded, tenants)

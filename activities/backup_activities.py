"""The backup and restore workflows' activities: ``eventstore/backup`` as Temporal activities,
with heartbeats, metrics and typed, non-retryable refusals.

A backup activity killed mid-way leaves a folder without a manifest (never listed or used; the
retention removes it later); run again, it makes a new backup. A restore is one transaction:
killed, it rolls back, and the retried activity starts it over; run twice, the same store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Final

from prometheus_client import Counter, Gauge, Histogram
from temporalio import activity
from temporalio.exceptions import ApplicationError

from acci.activities.backup_models import BackupInput, BackupResult, RestoreInput, RestoreResult
from acci.activities.heartbeats import heartbeating
from acci.eventstore.backup.catalog import apply_retention, latest
from acci.eventstore.backup.export import create_backup
from acci.eventstore.backup.manifest import BackupError, Manifest
from acci.eventstore.backup.restore import (
    PointInTime,
    load_chain,
    restore_chain,
    verify_files,
)
from acci.eventstore.errors import translated
from acci.eventstore.messaging.publisher import EventPublisher
from acci.eventstore.records import START, Position
from acci.eventstore.store import EventStore
from acci.readmodels.cache import QueryCache
from acci.readmodels.installed import default_projections
from acci.readmodels.tenant_refresh import refresh_tenant

log = logging.getLogger(__name__)

BACKUPS: Final = Counter(
    "acci_backups",
    "Backups made or failed, by kind, scope and outcome",
    ["kind", "scope", "outcome"],
)
BACKUP_BYTES: Final = Gauge("acci_backup_bytes", "Size of the newest backup, by scope", ["scope"])
BACKUP_SECONDS: Final = Histogram(
    "acci_backup_seconds",
    "How long a backup took",
    ["kind"],
    buckets=(0.5, 1, 5, 15, 60, 300, 900, 3_600),
)
BACKUP_RATE: Final = Gauge(
    "acci_backup_events_per_second", "Events per second of the newest backup, by scope", ["scope"]
)
BACKUP_LAST_SUCCESS: Final = Gauge(
    "acci_backup_last_success_timestamp_seconds",
    "When the newest good backup of a scope finished (Unix time): its age is the recovery point"
    " actually achieved",
    ["scope"],
)
RESTORES: Final = Counter("acci_restores", "Restores, by scope and outcome", ["scope", "outcome"])

REFUSED: Final = "BackupRefusedError"


def scope_of(tenant: str | None) -> str:
    return "all" if tenant is None else f"tenant:{tenant}"


class BackupActivities:
    """Holds the event store, the backup folder and what a tenant restore tells afterwards."""

    def __init__(
        self,
        store: EventStore,
        root: Path,
        *,
        keep_chains: int,
        cache: QueryCache | None = None,
        publisher: EventPublisher | None = None,
    ) -> None:
        self._store = store
        self._root = root
        self._keep = keep_chains
        self._cache = cache
        self._publisher = publisher

    @activity.defn(name="create_backup")
    async def create(self, job: BackupInput) -> BackupResult:
        """A full or incremental backup of the scope, then the retention of its chains."""
        parent = None if job.full else latest(self._root, job.tenant)
        scope = scope_of(job.tenant)
        kind = "full" if parent is None else "incremental"
        try:
            async with heartbeating(f"backing up {scope}"):
                manifest = await create_backup(
                    self._store.pool, self._root, tenant=job.tenant, parent=parent
                )
        except BackupError as e:  # a refusal: trying again would not change it
            BACKUPS.labels(kind, scope, "failed").inc()
            raise ApplicationError(str(e), type=type(e).__name__, non_retryable=True) from e
        except Exception:
            BACKUPS.labels(kind, scope, "failed").inc()
            raise
        deleted = apply_retention(self._root, keep=self._keep)
        _record(manifest, scope)
        return BackupResult(
            backup_id=manifest.backup_id,
            kind=manifest.kind,
            tenant=manifest.tenant,
            parent=manifest.parent,
            checkpoint=manifest.checkpoint,
            events=manifest.events,
            bytes=manifest.bytes,
            seconds=manifest.duration_seconds,
            deleted_by_retention=deleted,
        )

    @activity.defn(name="verify_backup")
    async def verify(self, job: RestoreInput) -> list[str]:
        """The chain's files and links, checked; its backup ids, full first."""
        try:
            chain = load_chain(self._root, job.backup_id)
            _check_scope(chain[-1][1], job.tenant)
            await asyncio.to_thread(verify_files, chain)
        except BackupError as e:
            raise ApplicationError(str(e), type=type(e).__name__, non_retryable=True) from e
        return [m.backup_id for _, m in chain]

    @activity.defn(name="restore_backup")
    async def restore(self, job: RestoreInput) -> RestoreResult:
        """Stage and check the chain, then replace the tenant (and make its read models
        again) or fill the empty store: one transaction."""
        chain = load_chain(self._root, job.backup_id)
        tenant = job.tenant or chain[-1][1].tenant
        until = PointInTime(
            position=Position.parse(job.until_position) if job.until_position else None,
            time=job.until_time,
        )
        restore_id = f"{job.backup_id}@{activity.info().workflow_id}"
        scope = scope_of(tenant)
        refreshed: dict[str, int] = {}
        try:
            async with heartbeating(f"restoring {scope}"):
                with translated():
                    async with self._store.pool.connection() as conn, conn.transaction():
                        staged = await restore_chain(
                            conn, chain, until, tenant=tenant, restore_id=restore_id
                        )
                        if tenant is not None:
                            refreshed = await refresh_tenant(
                                conn, self._store, tenant, default_projections()
                            )
        except BackupError as e:
            RESTORES.labels(scope, "refused").inc()
            raise ApplicationError(str(e), type=type(e).__name__, non_retryable=True) from e
        RESTORES.labels(scope, "ok").inc()
        if tenant is not None and self._cache is not None:
            for name in refreshed:
                await self._cache.invalidate(name, [tenant])
        log.info(
            "restored",
            extra={
                "backup_id": job.backup_id,
                "tenant": tenant,
                "events": staged.events,
                "until": str(until.position or until.time or "end"),
            },
        )
        return RestoreResult(
            phase="restoring",
            backup_id=job.backup_id,
            tenant=tenant,
            chain=[m.backup_id for _, m in chain],
            events=staged.events,
            commands=staged.commands,
            snapshots=staged.snapshots,
            last_position=None if staged.last_position is None else str(staged.last_position),
            read_model_events=refreshed,
        )

    @activity.defn(name="republish_tenant")
    async def republish(self, tenant: str) -> int:
        """Publish every event of ``tenant`` to RabbitMQ again, in order (message id = event
        id, so consumers that saw one before drop it)."""
        if self._publisher is None:
            raise ApplicationError("this worker has no RabbitMQ publisher", non_retryable=True)
        position, count = START, 0
        while events := await self._store.read_all(position, limit=1_000, tenant_id=tenant):
            await asyncio.to_thread(self._publisher.publish_events, events)
            count += len(events)
            position = events[-1].position
            activity.heartbeat(count)
        return count


def _check_scope(manifest: Manifest, tenant: str | None) -> None:
    if manifest.tenant is not None and tenant is not None and manifest.tenant != tenant:
        raise BackupError(
            f"backup {manifest.backup_id} is of tenant {manifest.tenant}, not {tenant}"
        )


def _record(manifest: Manifest, scope: str) -> None:
    BACKUPS.labels(manifest.kind, scope, "ok").inc()
    BACKUP_BYTES.labels(scope).set(manifest.bytes)
    BACKUP_SECONDS.labels(manifest.kind).observe(manifest.duration_seconds)
    rate = manifest.events / manifest.duration_seconds if manifest.duration_seconds else 0.0
    BACKUP_RATE.labels(scope).set(rate)
    BACKUP_LAST_SUCCESS.labels(scope).set(manifest.finished_at.timestamp())


def backup_activities(activities: BackupActivities) -> list[Callable[..., object]]:
    """The activities, as a worker registers them."""
    return [activities.create, activities.verify, activities.restore, activities.republish]

"""The snapshot job's activity: one batch of the scan over every stream; safe to run twice.

A stream whose head is at least ``min_events`` (per aggregate type, or the default) past its
newest snapshot is loaded (from that snapshot) and snapshotted at its head; its snapshots but the
newest ``keep`` are pruned, as are those of any stream holding more than ``keep`` (a hot stream
the command path's policy snapshots every ``ACCI_SNAPSHOT_AFTER_EVENTS`` events). Writing a
snapshot is idempotent (keyed by stream, state schema and version), so a batch run twice, or two
jobs at once, write each snapshot once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from prometheus_client import Counter, Gauge, Histogram
from psycopg_pool import AsyncConnectionPool
from temporalio import activity

from acci.activities.models import SNAPSHOT_SCHEDULE_ID, SnapshotBatchResult, SnapshotJobInput
from acci.domain.catalogue import AGGREGATES
from acci.eventstore.errors import EventStoreValidationError
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.snapshot_scan import START, StreamPosition, prune, scan_page

log = logging.getLogger(__name__)

SNAPSHOTS_WRITTEN: Final = Counter(
    "acci_snapshots_written", "Snapshots the snapshot job wrote", ["aggregate_type"]
)
SNAPSHOTS_PRUNED: Final = Counter("acci_snapshots_pruned", "Old snapshots the job deleted")
JOB_SECONDS: Final = Histogram(
    "acci_snapshot_job_seconds",
    "How long a snapshot job took, first batch to last",
    buckets=(1, 5, 15, 60, 300, 900, 3_600, 14_400),
)
JOB_LAST_SUCCESS: Final = Gauge(
    "acci_snapshot_job_last_success_timestamp_seconds",
    "When a snapshot job last finished (Unix time), per Schedule: alert if it grows old",
    ["schedule"],
)


class SnapshotActivities:
    """Holds the store's pool and repository, and the job's thresholds."""

    def __init__(
        self,
        *,
        pool: AsyncConnectionPool,
        repository: AggregateRepository,
        min_events: int = 500,
        min_events_by_type: Mapping[str, int] | None = None,
        keep: int = 3,
    ) -> None:
        self._pool = pool
        self._repository = repository
        self._min_events = min_events
        self._by_type = dict(min_events_by_type or {})
        self._keep = keep

    @activity.defn(name="SnapshotBatch")
    async def snapshot_batch(self, request: SnapshotJobInput) -> SnapshotBatchResult:
        """Look at the next ``streams_per_batch`` streams; snapshot and prune those far behind."""
        schemas = {name: cls.state_schema_version for name, cls in AGGREGATES.items()}
        page = await scan_page(
            self._pool, request.after or START, scan=request.streams_per_batch, schemas=schemas
        )
        written = pruned = 0
        for done, stream in enumerate(page.streams, start=1):
            due = stream.behind >= self._by_type.get(stream.key[2], self._min_events)
            if due and await self._snapshot(stream):
                written += 1
                SNAPSHOTS_WRITTEN.labels(stream.key[2]).inc()
            # Snapshotted here, or many times on the command path (a hot stream, never far
            # behind): either way only the newest are kept.
            if due or stream.snapshots > self._keep:
                pruned += await prune(self._pool, stream.key, keep=self._keep)
            if done % 10 == 0:  # the SDK throttles what it sends
                activity.heartbeat(done)
        log.info(
            "snapshot batch done",
            extra={
                "scanned": page.scanned,
                "written": written,
                "pruned": pruned,
                "next_after": list(page.next_after) if page.next_after else None,
            },
        )
        SNAPSHOTS_PRUNED.inc(pruned)
        if page.next_after is None:  # the job's last batch
            finished = datetime.now(UTC)
            if request.started_at is not None:
                JOB_SECONDS.observe((finished - request.started_at).total_seconds())
            JOB_LAST_SUCCESS.labels(SNAPSHOT_SCHEDULE_ID).set(finished.timestamp())
        return SnapshotBatchResult(
            next_after=page.next_after, scanned=page.scanned, written=written, pruned=pruned
        )

    async def _snapshot(self, stream: StreamPosition) -> bool:
        tenant, aggregate_id, kind = stream.key
        try:
            aggregate = await self._repository.load(AGGREGATES[kind], tenant, aggregate_id)
        except EventStoreValidationError as e:
            # An event its application cannot read: the job goes on, the stream is left as is
            # (its loads fail the same way until it is repaired).
            log.warning(
                "snapshot skipped: the stream cannot be loaded",
                extra={"tenant_id": tenant, "aggregate_id": aggregate_id, "error": str(e)},
            )
            return False
        return await self._repository.snapshot(aggregate)

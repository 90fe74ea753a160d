"""ACCI's Temporal Schedules, made from the settings: created or updated idempotently, listed.

``acci-snapshots`` (the snapshot job, ``workflows/snapshots.py``), and the backups'
(``workflows/backup.py``): ``acci-backup-full`` and ``acci-backup-incremental`` of every
tenant, and ``…-<tenant>`` of each tenant in ``ACCI_BACKUP_TENANTS``. They are ordinary Temporal
Schedules: the Web UI's Schedules page and ``temporal schedule list|describe|trigger|toggle``
show and control them as well as ``acci schedules``. Applying again with the same settings
changes nothing a user can see; with other settings it updates the Schedule in place (its
running workflows are left alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from acci.activities.backup_models import (
    BACKUP_FULL_SCHEDULE,
    BACKUP_INCREMENTAL_SCHEDULE,
    BACKUP_WORKFLOW,
    VERIFY_SCHEDULE,
    VERIFY_WORKFLOW,
    BackupInput,
    VerifyInput,
    backup_schedule_id,
)
from acci.activities.models import SNAPSHOT_SCHEDULE_ID, SNAPSHOT_WORKFLOW, SnapshotJobInput
from acci.workers.settings import Settings


@dataclass(frozen=True, slots=True)
class Applied:
    """What ``apply_schedules`` did to one Schedule."""

    schedule_id: str
    outcome: Literal["created", "updated"]


def snapshot_schedule(settings: Settings) -> Schedule:
    """The snapshot job's Schedule as the settings describe it."""
    if settings.snapshot_schedule_cron:
        spec = ScheduleSpec(
            cron_expressions=[settings.snapshot_schedule_cron],
            time_zone_name=settings.snapshot_schedule_time_zone,
        )
    else:
        every = timedelta(seconds=settings.snapshot_schedule_interval_s)
        spec = ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=every)],
            time_zone_name=settings.snapshot_schedule_time_zone,
        )
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SNAPSHOT_WORKFLOW,
            SnapshotJobInput(),
            id="acci-snapshot-job",  # Temporal adds the scheduled time to each run's id
            task_queue=settings.task_queue,
        ),
        spec=spec,
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=timedelta(seconds=settings.snapshot_schedule_catchup_window_s),
        ),
        state=ScheduleState(
            paused=settings.snapshot_schedule_paused,
            note="applied by acci schedules apply (ACCI_SNAPSHOT_SCHEDULE_* settings)",
        ),
    )


def backup_schedule(settings: Settings, tenant: str | None, *, full: bool) -> Schedule:
    """A backup Schedule: full at ``backup_full_cron``, or incremental every
    ``backup_incremental_interval_s``, of every tenant (``tenant`` None) or of one."""
    if full:
        spec = ScheduleSpec(
            cron_expressions=[settings.backup_full_cron],
            time_zone_name=settings.backup_schedule_time_zone,
        )
    else:
        every = timedelta(seconds=settings.backup_incremental_interval_s)
        spec = ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=every)],
            time_zone_name=settings.backup_schedule_time_zone,
        )
    base = BACKUP_FULL_SCHEDULE if full else BACKUP_INCREMENTAL_SCHEDULE
    schedule_id = backup_schedule_id(base, tenant)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            BACKUP_WORKFLOW,
            BackupInput(tenant=tenant, full=full, schedule=schedule_id),
            id=f"{schedule_id}-run",  # Temporal adds the scheduled time to each run's id
            task_queue=settings.task_queue,
        ),
        spec=spec,
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=timedelta(seconds=settings.snapshot_schedule_catchup_window_s),
        ),
        state=ScheduleState(
            paused=settings.backup_schedule_paused,
            note="applied by acci schedules apply (ACCI_BACKUP_* settings)",
        ),
    )


def verify_schedule(settings: Settings) -> Schedule:
    """``acci verify`` of every tenant, every ``verify_schedule_interval_s`` (paused by
    default: it reads the whole store)."""
    every = timedelta(seconds=settings.verify_schedule_interval_s)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            VERIFY_WORKFLOW,
            VerifyInput(sample=settings.verify_snapshot_sample),
            id=f"{VERIFY_SCHEDULE}-run",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(
            paused=settings.verify_schedule_paused,
            note="applied by acci schedules apply (ACCI_VERIFY_* settings)",
        ),
    )


def schedules(settings: Settings) -> dict[str, Schedule]:
    """Every Schedule ACCI keeps, by id."""
    found = {
        SNAPSHOT_SCHEDULE_ID: snapshot_schedule(settings),
        VERIFY_SCHEDULE: verify_schedule(settings),
    }
    for tenant in (None, *settings.backup_tenants):
        for full in (True, False):
            schedule = backup_schedule(settings, tenant, full=full)
            base = BACKUP_FULL_SCHEDULE if full else BACKUP_INCREMENTAL_SCHEDULE
            found[backup_schedule_id(base, tenant)] = schedule
    return found


async def apply_schedules(client: Client, settings: Settings) -> list[Applied]:
    """Create each Schedule, or update it to the settings if it exists."""
    applied = []
    for schedule_id, schedule in schedules(settings).items():
        handle = client.get_schedule_handle(schedule_id)
        try:
            await handle.describe()
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            await client.create_schedule(schedule_id, schedule)
            applied.append(Applied(schedule_id, "created"))
            continue

        def replace(_: ScheduleUpdateInput, wanted: Schedule = schedule) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=wanted)

        await handle.update(replace)
        applied.append(Applied(schedule_id, "updated"))
    return applied


async def describe_schedules(client: Client, settings: Settings) -> list[dict[str, Any]]:
    """Each of ACCI's Schedules as Temporal has it now (missing ones say so)."""
    found = []
    for schedule_id in schedules(settings):
        try:
            described = await client.get_schedule_handle(schedule_id).describe()
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            found.append({"schedule_id": schedule_id, "exists": False})
            continue
        spec = described.schedule.spec
        info = described.info
        recent = info.recent_actions[-1] if info.recent_actions else None
        found.append(
            {
                "schedule_id": schedule_id,
                "exists": True,
                "paused": described.schedule.state.paused,
                "every_seconds": [int(i.every.total_seconds()) for i in spec.intervals],
                "cron": list(spec.cron_expressions),
                "time_zone": spec.time_zone_name,
                "next_runs": [t.isoformat() for t in info.next_action_times[:3]],
                "last_run": recent.started_at.isoformat() if recent else None,
                "runs": info.num_actions,
                "skipped_overlapping": info.num_actions_skipped_overlap,
            }
        )
    return found

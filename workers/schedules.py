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
    ScheduleCalendarSpec,
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
    return _job(
        settings,
        SNAPSHOT_WORKFLOW,
        SnapshotJobInput(),
        run_id="acci-snapshot-job",
        spec=_spec(
            cron=settings.snapshot_schedule_cron,
            every_s=settings.snapshot_schedule_interval_s,
            time_zone=settings.snapshot_schedule_time_zone,
        ),
        catchup_s=settings.snapshot_schedule_catchup_window_s,
        paused=settings.snapshot_schedule_paused,
        named="ACCI_SNAPSHOT_SCHEDULE_*",
    )


def backup_schedule(settings: Settings, tenant: str | None, *, full: bool) -> Schedule:
    """A backup Schedule: full at ``backup_full_cron``, or incremental every
    ``backup_incremental_interval_s``, of every tenant (``tenant`` None) or of one."""
    schedule_id = backup_schedule_id(
        BACKUP_FULL_SCHEDULE if full else BACKUP_INCREMENTAL_SCHEDULE, tenant
    )
    return _job(
        settings,
        BACKUP_WORKFLOW,
        BackupInput(tenant=tenant, full=full, schedule=schedule_id),
        run_id=f"{schedule_id}-run",
        spec=_spec(
            cron=settings.backup_full_cron if full else None,
            every_s=settings.backup_incremental_interval_s,
            time_zone=settings.backup_schedule_time_zone,
        ),
        catchup_s=settings.snapshot_schedule_catchup_window_s,
        paused=settings.backup_schedule_paused,
        named="ACCI_BACKUP_*",
    )


def verify_schedule(settings: Settings) -> Schedule:
    """``acci verify`` of every tenant, every ``verify_schedule_interval_s`` (paused by
    default: it reads the whole store)."""
    return _job(
        settings,
        VERIFY_WORKFLOW,
        VerifyInput(sample=settings.verify_snapshot_sample),
        run_id=f"{VERIFY_SCHEDULE}-run",
        spec=ScheduleSpec(
            intervals=[
                ScheduleIntervalSpec(every=timedelta(seconds=settings.verify_schedule_interval_s))
            ]
        ),
        catchup_s=None,
        paused=settings.verify_schedule_paused,
        named="ACCI_VERIFY_*",
    )


def _spec(*, cron: str | None, every_s: int, time_zone: str) -> ScheduleSpec:
    """At ``cron`` if given, else every ``every_s`` seconds, in ``time_zone``."""
    if cron:
        return ScheduleSpec(cron_expressions=[cron], time_zone_name=time_zone)
    every = timedelta(seconds=every_s)
    return ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)], time_zone_name=time_zone)


def _job(
    settings: Settings,
    workflow: str,
    arg: object,
    *,
    run_id: str,
    spec: ScheduleSpec,
    catchup_s: int | None,
    paused: bool,
    named: str,
) -> Schedule:
    """A Schedule that starts ``workflow`` with ``arg`` (runs ``run_id`` plus the scheduled
    time) on ACCI's task queue; a run still going when the next is due is skipped, and runs
    missed while Temporal was down are caught up within ``catchup_s`` (None: the SDK's)."""
    policy = SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP)
    if catchup_s is not None:
        policy = SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(seconds=catchup_s)
        )
    return Schedule(
        # Temporal adds the scheduled time to each run's id.
        action=ScheduleActionStartWorkflow(
            workflow, arg, id=run_id, task_queue=settings.task_queue
        ),
        spec=spec,
        policy=policy,
        state=ScheduleState(
            paused=paused, note=f"applied by acci schedules apply ({named} settings)"
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
                # A cron expression comes back as the calendar the server parsed it into.
                "cron": [*spec.cron_expressions, *map(calendar_text, spec.calendars)],
                "time_zone": spec.time_zone_name,
                "next_runs": [t.isoformat() for t in info.next_action_times[:3]],
                "last_run": recent.started_at.isoformat() if recent else None,
                "runs": info.num_actions,
                "skipped_overlapping": info.num_actions_skipped_overlap,
            }
        )
    return found


_CALENDAR_FIELDS = ("minute", "hour", "day_of_month", "month", "day_of_week")


def calendar_text(calendar: ScheduleCalendarSpec) -> str:
    """A calendar as the five fields of a cron expression (``0 3 * * 0``), seconds first where
    they are not 0; a field that takes every value its default takes is ``*``."""
    fields = list(_CALENDAR_FIELDS)
    if _ranges(calendar.second) != [(0, 0, 1)]:
        fields.insert(0, "second")
    parts = []
    for name in fields:
        ranges = _ranges(getattr(calendar, name))
        default = _ranges(ScheduleCalendarSpec.__dataclass_fields__[name].default)
        if name in ("day_of_month", "month", "day_of_week") and ranges == default:
            parts.append("*")
            continue
        parts.append(
            ",".join(
                f"{start}{f'-{end}' if end > start else ''}{f'/{step}' if step > 1 else ''}"
                for start, end, step in ranges
            )
        )
    return " ".join(parts)


def _ranges(ranges: Any) -> list[tuple[int, int, int]]:
    """Each range as (start, end, step), with the SDK's defaults filled in (an end before the
    start is the start; a step of 0 is 1)."""
    return [(r.start, max(r.end, r.start), max(r.step, 1)) for r in ranges]

"""The Web UI as an operator's console: what a run says without being opened, what a rejected
command's failure shows, a projection's standing on its page, and an idle projection's cost.

Everything is read as the Web UI reads it, from the real dev server: a run's summary from its
description, its current details from the ``__temporal_workflow_metadata`` query, a failure
from the run's history.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle

from acci.activities.command_handler import CommandHandler
from acci.activities.models import SnapshotJobInput, projection_workflow_id
from acci.domain.errors import CommandValidationError, DomainError
from acci.domain.tenant_commands import CreateTenant
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.store import EventStore
from acci.workers.settings import Settings
from acci.workers.temporal_client import command_result, start_command
from acci.workflows.projection import ProjectionWorkflow
from acci.workflows.snapshots import SnapshotWorkflow
from tests.workflows.conftest import eventually, unique
from tests.workflows.helpers import command, send

FAILED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    """A run's current details, as the Web UI asks for them."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)


async def failure_of(handle: WorkflowHandle[Any, Any]) -> Failure:
    history = await handle.fetch_history()
    (failed,) = [e for e in history.events if e.event_type == FAILED]
    return failed.workflow_execution_failed_event_attributes.failure


def chain(failure: Failure) -> list[Failure]:
    links = [failure]
    while links[-1].HasField("cause"):
        links.append(links[-1].cause)
    return links


async def test_a_command_run_says_what_it_is_and_how_it_ended(
    worker: Client, settings: Settings
) -> None:
    q, t = settings.task_queue, unique("console")
    await send(worker, q, t, "CreateTenant", name="Console Corp")
    sent = await start_command(
        worker,
        command(t, "RegisterUser", user_id="eve", email="eve@console.example", display_name="Eve"),
        task_queue=q,
    )
    await command_result(sent.handle)
    description = await sent.handle.describe()
    assert await description.static_summary() == f"RegisterUser {t}/eve"
    assert await current_details(sent.handle) == f"RegisterUser {t}/eve → v1"


async def test_a_rejected_command_shows_its_type_and_message_without_a_stack_trace(
    worker: Client, settings: Settings
) -> None:
    q, t = settings.task_queue, unique("console-bad")
    await send(worker, q, t, "CreateTenant", name="Console Corp")
    rejected = await start_command(
        worker,
        command(t, "RegisterUser", user_id="eve", email="not-an-email", display_name="Eve"),
        task_queue=q,
    )
    duplicate = await start_command(worker, command(t, "CreateTenant", name="Again"), task_queue=q)
    for sent, family, error in (
        (rejected, "validation", CommandValidationError),
        (duplicate, "domain", DomainError),
    ):
        with pytest.raises(error):
            await command_result(sent.handle)
        failure = await failure_of(sent.handle)
        top = failure.application_failure_info
        assert top.type == error.__name__ and top.non_retryable
        assert failure.message  # the one-line reason, first thing on the page
        assert [link.stack_trace for link in chain(failure)] == [""] * len(chain(failure))
        details = await current_details(sent.handle)
        assert details.endswith(f"rejected: {family}"), details


async def test_a_projection_page_shows_its_state_position_head_and_lag(
    worker: Client, settings: Settings
) -> None:
    q, t = settings.task_queue, unique("console-proj")
    result = await send(worker, q, t, "CreateTenant", name="Console Corp")
    handle = worker.get_workflow_handle(projection_workflow_id("tenants"))

    async def shows_the_command() -> str | None:
        details = await current_details(handle)
        position = details.split("position ", 1)[-1].split(" ", 1)[0]
        reached = position.count(":") == 1 and _at_or_after(position, result.positions[-1])
        return details if details.startswith("**running**") and reached else None

    details = await eventually(shows_the_command, what="the projection's details to move")
    assert " · head " in details and " · lag 0 events" in details and "events/s" in details


def _at_or_after(position: str, target: str) -> bool:
    def key(text: str) -> tuple[int, int]:
        a, b = text.split(":")
        return int(a), int(b)

    return key(position) >= key(target)


async def test_an_idle_projection_adds_nothing_to_its_history_and_still_sees_unannounced_appends(
    worker: Client, store: EventStore, repository: AggregateRepository, pool: AsyncConnectionPool
) -> None:
    handle = worker.get_workflow_handle_for(
        ProjectionWorkflow.run, projection_workflow_id("tenants")
    )
    # Settle: whatever the earlier tests sent has been applied and reported, and the next batch
    # waits (heartbeating): no workflow task is left in flight to add to the history.
    await eventually(lambda: _caught_up(handle), what="the tenants projection to be caught up")
    await eventually(lambda: _waited(handle, 2), what="the batch to wait past its report")
    applied = (await handle.query(ProjectionWorkflow.status)).applied_total
    before = (await handle.describe()).history_length
    # A command handled outside any worker (as a script, a restore or another deployment
    # would append) wakes no one: the waiting batch finds it by its poll, in the same activity.
    tenant = unique("console-quiet")
    await CommandHandler(store, repository).handle(
        tenant, CreateTenant(tenant_id=tenant, name="Quiet"), command_id=uuid.uuid4()
    )
    await eventually(lambda: _has_row(pool, tenant), what="the unannounced append applied")
    await eventually(lambda: _reported_more(handle, applied), what="the batch to report it")
    await eventually(lambda: _waited(handle, 2), what="the next batch to wait past its report")
    first = await eventually(lambda: heartbeat_time(handle), what="the next batch waiting")
    settled = (await handle.describe()).history_length
    # One report for it (an activity and a workflow task: six events), no more.
    assert settled - before <= 6
    # Then idle: the batch activity keeps heartbeating, and the history stands still.
    await eventually(
        lambda: _heartbeat_after(handle, first, seconds=12),
        within=60,
        what="twelve seconds of the batch's heartbeats",
    )
    assert (await handle.describe()).history_length == settled


async def _waited(handle: WorkflowHandle[ProjectionWorkflow, None], seconds: float) -> bool:
    """Whether the running batch has waited ``seconds`` (heartbeating) since it started: past
    the second within which a batch that applied something reports it."""
    pending = (await handle.describe()).raw_description.pending_activities
    if len(pending) != 1 or not pending[0].HasField("last_heartbeat_time"):
        return False
    batch = pending[0]
    beat, started = batch.last_heartbeat_time.ToDatetime(), batch.last_started_time.ToDatetime()
    return (beat - started).total_seconds() >= seconds


async def _reported_more(handle: WorkflowHandle[ProjectionWorkflow, None], applied: int) -> bool:
    status = await handle.query(ProjectionWorkflow.status)
    return status.applied_total > applied and status.lag_events == 0


async def _caught_up(handle: WorkflowHandle[ProjectionWorkflow, None]) -> bool:
    status = await handle.query(ProjectionWorkflow.status)
    return status.lag_events == 0 and status.updated_at is not None


async def _has_row(pool: AsyncConnectionPool, tenant: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT 1 FROM read_models.tenants WHERE tenant_id = %s", (tenant,)
        )
        return await cur.fetchone() is not None


async def heartbeat_time(handle: WorkflowHandle[ProjectionWorkflow, None]) -> datetime | None:
    """When the waiting batch last heartbeated (None: no batch running, or no beat yet)."""
    pending = (await handle.describe()).raw_description.pending_activities
    if len(pending) != 1 or not pending[0].HasField("last_heartbeat_time"):
        return None
    return pending[0].last_heartbeat_time.ToDatetime()


async def _heartbeat_after(
    handle: WorkflowHandle[ProjectionWorkflow, None], first: datetime, *, seconds: float
) -> bool:
    latest = await heartbeat_time(handle)
    return latest is not None and (latest - first).total_seconds() >= seconds


async def test_a_snapshot_job_shows_its_totals_on_its_page(
    worker: Client, settings: Settings
) -> None:
    q, t = settings.task_queue, unique("console-snap")
    await send(worker, q, t, "CreateTenant", name="Snap Corp")
    handle = await worker.start_workflow(
        SnapshotWorkflow.run, SnapshotJobInput(), id=unique("snapshots"), task_queue=q
    )
    done = await handle.result()
    assert done.scanned >= 1
    details = await current_details(handle)
    assert details.startswith("**done**") and f"{done.scanned} streams scanned" in details

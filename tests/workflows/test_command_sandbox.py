"""The command workflow under the SDK's strict default sandbox, not the worker's pass-through."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from acci.eventstore.store import EventStore
from acci.workers.settings import Settings
from acci.workers.worker import running_worker
from tests.workflows.conftest import unique
from tests.workflows.helpers import send


async def test_a_command_runs_in_the_sdks_default_sandbox_too(
    temporal_env: WorkflowEnvironment, settings: Settings, store: EventStore
) -> None:
    """The worker passes the command workflow's modules through the sandbox instead of
    importing them for every run (workers/worker.py, SANDBOX_PASSTHROUGH); imported and run
    under every check of the SDK's default sandbox, the workflow still completes a command."""
    client, t = temporal_env.client, unique("wf-strict")
    async with running_worker(settings, client, projections=[], sandbox_passthrough=()):
        result = await send(client, settings.task_queue, t, "CreateTenant", name="Strict")
    assert [e.event_id for e in await store.read_stream(t, t)] == result.event_ids

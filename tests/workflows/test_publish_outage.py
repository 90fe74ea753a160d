"""RabbitMQ unreachable: the CLI reports a stored command as publish-pending, a worker stops
within its grace, and what was never published can be published from the store."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from acci.eventstore.records import RecordedEvent
from acci.eventstore.store import EventStore
from acci.workers.settings import Settings
from acci.workers.temporal_client import command_result, start_command
from tests.workflows.conftest import Captured, eventually, free_port, unique, worker_env
from tests.workflows.helpers import command
from tests.workflows.test_durability import ACCI, WorkerProcess

# Nothing listens there: every connection attempt is refused at once.
UNREACHABLE = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
GRACE = 12.0  # the worker's 10 s grace, and a little for the process to end


def cli_env(settings: Settings, task_queue: str) -> dict[str, str]:
    return {
        **worker_env(settings),
        "ACCI_TASK_QUEUE": task_queue,
        "ACCI_METRICS_PORT": "0",
        "ACCI_COMMAND_PUBLISH_WAIT_MS": "1000",
    }


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    """Two worker processes on one task queue: one with an unreachable RabbitMQ, one with the
    real one."""
    queue = f"acci-pub-{uuid.uuid4().hex[:8]}"
    cut_off = WorkerProcess(settings, queue, tmp_path / "cut-off.log")
    cut_off._env.update({**cli_env(settings, queue), "ACCI_RABBITMQ_URL": UNREACHABLE})
    healthy = WorkerProcess(settings, queue, tmp_path / "healthy.log")
    healthy._env.update(cli_env(settings, queue))
    yield cut_off, healthy
    for w in (cut_off, healthy):
        if w.process is not None and w.process.poll() is None:
            w.process.kill()
            w.process.wait(10)


def acci(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ACCI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def terminate_within_grace(worker: WorkerProcess) -> tuple[int, float]:
    assert worker.process is not None
    started = time.monotonic()
    worker.process.terminate()
    code = worker.process.wait(30)
    return code, time.monotonic() - started


async def test_cli_says_stored_and_publish_pending_then_the_workflow_publishes(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    store: EventStore,
    captured: Captured,
    workers: tuple[WorkerProcess, WorkerProcess],
) -> None:
    cut_off, healthy = workers
    tenant = unique("pub-pending")
    await cut_off.start()

    sent = await asyncio.to_thread(
        acci, cut_off._env, "tenant", "create", "--tenant", tenant, "--name", "P", "--json"
    )

    assert sent.returncode == 3, sent.stderr
    shown = json.loads(sent.stdout)
    (event,) = await store.read_stream(tenant, tenant)
    assert shown["published"] is False
    assert shown["position"] == str(event.position)
    assert shown["event_ids"] == [str(event.event_id)]
    # The worker is retrying the publish: SIGTERM still stops it within its grace.
    code, took = await asyncio.to_thread(terminate_within_grace, cut_off)
    assert (code, took < GRACE) == (0, True), f"exit {code} after {took:.1f}s"
    assert str(event.event_id) not in captured.message_ids()

    await healthy.start()
    handle = temporal_env.client.get_workflow_handle(shown["workflow_id"])
    result = await asyncio.wait_for(handle.result(), 60)
    assert result["event_ids"] == [str(event.event_id)]
    await captured.wait_for({str(event.event_id)})
    # Once published, the same command id reports success (exit 0, published).
    again = await asyncio.to_thread(
        acci,
        healthy._env,
        "tenant",
        "create",
        "--tenant",
        tenant,
        "--name",
        "P",
        "--json",
        "--command-id",
        shown["command_id"],
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["published"] is True


async def test_events_of_a_terminated_command_are_published_by_the_operator(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    store: EventStore,
    captured: Captured,
    workers: tuple[WorkerProcess, WorkerProcess],
) -> None:
    cut_off, healthy = workers
    queue = cut_off._env["ACCI_TASK_QUEUE"]
    first, second = unique("pub-term-a"), unique("pub-term-b")
    await cut_off.start()
    handles = [
        (
            await start_command(
                temporal_env.client, command(t, "CreateTenant", name="T"), task_queue=queue
            )
        ).handle
        for t in (first, second)
    ]

    async def appended() -> list[RecordedEvent] | None:
        events = [e for t in (first, second) for e in await store.read_stream(t, t)]
        return events if len(events) == 2 else None

    events = await eventually(appended, within=60, what="both appends")
    for handle in handles:
        await handle.terminate(reason="test: terminated between append and publish")
    code, took = await asyncio.to_thread(terminate_within_grace, cut_off)
    assert (code, took < GRACE) == (0, True), f"exit {code} after {took:.1f}s"
    ids = {str(e.event_id) for e in events}
    assert not ids & set(captured.message_ids())

    # One command's events, by command id.
    by_command = await asyncio.to_thread(
        acci,
        healthy._env,
        "publish-events",
        "--tenant",
        first,
        "--command-id",
        str(events[0].command_id),
    )
    assert by_command.returncode == 0, by_command.stderr
    await captured.wait_for({str(events[0].event_id)})
    assert str(events[1].event_id) not in captured.message_ids()

    # A range of the global order, one tenant: exactly the second command's event.
    before = min(e.position for e in events)
    by_range = await asyncio.to_thread(
        acci,
        healthy._env,
        "publish-events",
        "--after",
        f"{before.transaction_id}:{before.global_position - 1}",
        "--tenant",
        second,
        "--json",
    )
    assert by_range.returncode == 0, by_range.stderr
    assert json.loads(by_range.stdout)["published"] == 1
    await captured.wait_for(ids)

    # Nothing to publish is not a success: another tenant's command id, a range that is empty
    # by its own bounds.
    foreign = await asyncio.to_thread(
        acci,
        healthy._env,
        "publish-events",
        "--tenant",
        second,
        "--command-id",
        str(events[0].command_id),
    )
    assert (foreign.returncode, foreign.stdout) == (1, ""), foreign.stderr
    assert foreign.stderr.splitlines()[-1] == (
        f"error (not_found): command {events[0].command_id} has no events in tenant {second}:"
        " nothing published"
    )
    inverted = await asyncio.to_thread(
        acci, healthy._env, "publish-events", "--after", str(events[1].position), "--until", "0:1"
    )
    assert inverted.returncode == 2, inverted.stderr
    assert "is not after --after" in inverted.stderr
    with pytest.raises(Exception, match=r"(?i)terminated"):
        await command_result(handles[0])


async def test_a_resend_whose_publish_is_retried_still_reports_a_resend(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    store: EventStore,
    workers: tuple[WorkerProcess, WorkerProcess],
) -> None:
    cut_off, healthy = workers
    queue = cut_off._env["ACCI_TASK_QUEUE"]
    client = temporal_env.client
    create = command(unique("pub-resend"), "CreateTenant", name="R")
    await healthy.start()
    first = await command_result((await start_command(client, create, task_queue=queue)).handle)
    assert not first.duplicate
    code, _ = await asyncio.to_thread(terminate_within_grace, healthy)
    assert code == 0

    # Sent again while RabbitMQ is out: the new run finds the events stored (by the first
    # run), fails to publish, and retries.
    await cut_off.start()
    resent = (await start_command(client, create, task_queue=queue)).handle

    async def retried_on_a_timer() -> bool:
        # Past the local retry threshold the run waits for its next attempt on a timer.
        async for event in resent.fetch_history_events():
            if event.HasField("timer_started_event_attributes"):
                return True
        return False

    await eventually(retried_on_a_timer, within=60, what="the publish retried")
    code, _ = await asyncio.to_thread(terminate_within_grace, cut_off)
    assert code == 0
    await healthy.start()
    again = await asyncio.wait_for(command_result(resent), 60)
    # A later attempt of the re-send is still a re-send: the events are the first run's.
    assert again.duplicate
    assert (again.event_ids, again.positions) == (first.event_ids, first.positions)
    assert len(await store.read_stream(create.tenant_id, create.tenant_id)) == 1

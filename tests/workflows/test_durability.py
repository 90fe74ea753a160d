"""Crashes and outages: a killed worker and a stopped RabbitMQ lose and double nothing.

The module's worker publishes to a private RabbitMQ node, whose application the outage tests
stop and start; the machine's shared broker is left alone.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client, WorkflowExecution
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from acci.eventstore.records import RecordedEvent
from acci.eventstore.store import EventStore
from acci.workers.settings import Settings
from acci.workers.temporal_client import command_result, start_command
from acci.workflows.command import CommandWorkflow
from tests.workflows.conftest import Captured, eventually, unique, worker_env
from tests.workflows.helpers import command, send
from tests.workflows.rabbitmq_node import PrivateRabbitMQ, RabbitMQApp

ACCI = str(Path(sys.executable).with_name("acci"))


@pytest.fixture(scope="module")
def rabbitmq_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbitMQ]:
    node = PrivateRabbitMQ(tmp_path_factory.mktemp("rabbitmq"))
    node.start()
    yield node
    node.close()


@pytest.fixture(scope="module")
def settings(settings: Settings, rabbitmq_node: PrivateRabbitMQ) -> Settings:
    """The module's settings, publishing to the private node."""
    return settings.model_copy(update={"rabbitmq_url": SecretStr(rabbitmq_node.url)})


@pytest_asyncio.fixture
async def rabbitmq_app(rabbitmq_node: PrivateRabbitMQ) -> AsyncIterator[RabbitMQApp]:
    """The private node's application, started again at the end of the test whatever happened."""
    app = RabbitMQApp(rabbitmq_node)
    yield app
    if app.stopped:
        await app.start()


class WorkerProcess:
    """`acci worker` as its own process, on its own task queue."""

    def __init__(self, settings: Settings, task_queue: str, log: Path) -> None:
        self._env = {**worker_env(settings), "ACCI_TASK_QUEUE": task_queue}
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        offset = self._log.stat().st_size if self._log.exists() else 0
        with self._log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
                [ACCI, "worker"], env=self._env, stdout=out, stderr=subprocess.STDOUT
            )

        def polling() -> bool:
            assert self.process is not None and self.process.poll() is None, self._log.read_text()
            return b"worker polling" in self._log.read_bytes()[offset:]

        await eventually(polling, within=60, what="the worker process to poll")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(30)


@pytest.fixture
def worker_process(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings, f"acci-proc-{uuid.uuid4().hex[:8]}", tmp_path / "worker.log")
    yield process
    if process.process is not None and process.process.poll() is None:
        process.process.kill()
        process.process.wait(10)


async def test_a_worker_killed_between_append_and_publish_publishes_after_restart(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    store: EventStore,
    captured: Captured,
    rabbitmq_app: RabbitMQApp,
    worker_process: WorkerProcess,
) -> None:
    client = temporal_env.client
    queue = worker_process._env["ACCI_TASK_QUEUE"]
    tenant = unique("wf-killed")
    await worker_process.start()
    # With RabbitMQ down the run appends, then keeps retrying its publish step.
    await rabbitmq_app.stop()
    sent = await start_command(
        client, command(tenant, "CreateTenant", name="Killed"), task_queue=queue
    )

    async def appended() -> list[RecordedEvent]:
        return await store.read_stream(tenant, tenant)

    (event,) = await eventually(appended, within=60, what="the append")
    worker_process.kill()
    await rabbitmq_app.start()
    await worker_process.start()

    result = await asyncio.wait_for(command_result(sent.handle), 120)
    assert result.event_ids == [event.event_id]
    await captured.wait_for({str(event.event_id)})
    assert len(await store.read_stream(tenant, tenant)) == 1
    assert worker_process.stop() == 0  # SIGTERM: a clean shutdown


async def test_a_command_completes_once_rabbitmq_is_back(
    worker: Client,
    settings: Settings,
    store: EventStore,
    captured: Captured,
    rabbitmq_app: RabbitMQApp,
) -> None:
    tenant = unique("wf-outage")
    await rabbitmq_app.stop()
    running = asyncio.create_task(
        send(worker, settings.task_queue, tenant, "CreateTenant", name="Outage")
    )

    async def appended() -> list[RecordedEvent]:
        return await store.read_stream(tenant, tenant)

    (event,) = await eventually(appended, within=60, what="the append")
    assert not running.done()
    await rabbitmq_app.start()
    result = await asyncio.wait_for(running, 120)
    assert result.event_ids == [event.event_id]
    await captured.wait_for({str(event.event_id)})


async def test_recorded_histories_replay_deterministically(
    worker: Client, settings: Settings
) -> None:
    await send(worker, settings.task_queue, unique("wf-replay"), "CreateTenant", name="Replay")
    with pytest.raises(Exception, match="email"):
        await send(
            worker,
            settings.task_queue,
            unique("wf-replay"),
            "RegisterUser",
            user_id="r",
            email="bad",
            display_name="R",
        )

    async def closed_runs() -> list[WorkflowExecution] | None:
        query = f"TaskQueue = '{settings.task_queue}' AND ExecutionStatus != 'Running'"
        runs = [w async for w in worker.list_workflows(query)]
        return runs if len(runs) >= 2 else None

    runs = await eventually(closed_runs, what="closed runs in visibility")
    histories = [
        await worker.get_workflow_handle(w.id, run_id=w.run_id).fetch_history() for w in runs
    ]
    replayer = Replayer(workflows=[CommandWorkflow], data_converter=pydantic_data_converter)
    for history in histories:
        await replayer.replay_workflow(history)

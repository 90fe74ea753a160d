"""What a real worker process writes to its log: a rejected command is one line without a
traceback, a command's lines carry its ids, and no password ever appears."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from acci.domain.errors import CommandError
from acci.workers.settings import Settings
from acci.workers.temporal_client import command_result, start_command
from tests.workflows.conftest import eventually, unique
from tests.workflows.helpers import command
from tests.workflows.test_durability import WorkerProcess

PG_SECRET = "pg-s3cret-4f1d"
AMQP_SECRET = "amqp-s3cret-9c2e"
REDIS_SECRET = "redis-s3cret-77ab"


@pytest_asyncio.fixture(scope="module")
async def logged_worker(
    settings: Settings, pool: AsyncConnectionPool, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[WorkerProcess, Path, str]]:
    """`acci worker` with a password in each service URL: PostgreSQL (trust: accepted and
    ignored), RabbitMQ (wrong: refused, so the refusal is logged), Redis (none configured:
    refused too)."""
    log = tmp_path_factory.mktemp("worker-logs") / "worker.log"
    queue = f"acci-logs-{uuid.uuid4().hex[:8]}"
    process = WorkerProcess(settings, queue, log)
    process._env |= {
        "ACCI_DATABASE_URL": f"{settings.database_url.get_secret_value()} password={PG_SECRET}",
        "ACCI_RABBITMQ_URL": f"amqp://guest:{AMQP_SECRET}@127.0.0.1:5672/%2F",
        "ACCI_REDIS_URL": f"redis://:{REDIS_SECRET}@127.0.0.1:6379/0",
    }
    await process.start()
    try:
        yield process, log, queue
    finally:
        process.kill()


def _lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        out.append(entry)
    return out


def _about(log: Path, command_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every line that names the command, or its workflow run."""
    ids = {str(command_id), f"cmd-{command_id}"}
    return [e for e in _lines(log) if e.get("command_id") in ids or e.get("workflow_id") in ids]


@pytest.mark.parametrize(
    ("kind", "command_type", "payload", "error_type"),
    [
        ("validation", "CreateTenant", {"name": ""}, "CommandValidationError"),
        ("domain", "SuspendTenant", {"reason": "never created"}, "DomainError"),
    ],
)
async def test_a_rejected_command_writes_one_line_with_its_error_type_and_no_traceback(
    temporal_env: WorkflowEnvironment,
    logged_worker: tuple[WorkerProcess, Path, str],
    kind: str,
    command_type: str,
    payload: dict[str, Any],
    error_type: str,
) -> None:
    _, log, queue = logged_worker
    tenant = unique(f"logs-{kind}")
    sent_command = command(tenant, command_type, **payload)
    sent = await start_command(temporal_env.client, sent_command, task_queue=queue)
    with pytest.raises(CommandError) as rejected:
        await command_result(sent.handle)
    assert rejected.value.code == kind
    command_id = sent_command.command_id
    # Every line about the run is written (each one flushed) before the worker completes the
    # workflow task that fails the run, so before the client hears of the rejection.
    lines = _about(log, command_id)
    assert len(lines) == 1, lines
    (line,) = lines
    assert line["error_type"] == error_type
    assert "exc" not in line and "Traceback" not in json.dumps(line)
    assert (line["tenant_id"], line["command_type"]) == (tenant, command_type)
    assert line["correlation_id"] == line["causation_id"] == str(command_id)
    assert line["workflow_id"] == f"cmd-{command_id}" and line["run_id"]


async def test_a_commands_lines_carry_its_ids_without_each_call_naming_them(
    temporal_env: WorkflowEnvironment, logged_worker: tuple[WorkerProcess, Path, str]
) -> None:
    _, log, queue = logged_worker
    tenant = unique("logs-ok")
    # RabbitMQ refuses the worker's password: the command is stored, and its publish retried.
    sent = command(tenant, "CreateTenant", name="Logged")
    await start_command(temporal_env.client, sent, task_queue=queue)

    def handled() -> list[dict[str, Any]]:
        return [e for e in _about(log, sent.command_id) if e["msg"] == "command handled"]

    (line,) = await eventually(handled, what="the command handled line")
    assert line["tenant_id"] == tenant
    assert line["command_type"] == "CreateTenant"
    assert line["workflow_id"] == f"cmd-{sent.command_id}"
    assert line["activity_type"] == "RunCommand"
    assert line["correlation_id"] == str(sent.command_id)
    # No tracing configured: no trace ids; payloads are off by default.
    assert "trace_id" not in line and "payload" not in line


async def test_no_password_of_any_service_url_is_ever_logged(
    logged_worker: tuple[WorkerProcess, Path, str],
) -> None:
    _, log, _ = logged_worker
    # The refusals (RabbitMQ's at start, Redis's) have been logged by now.
    await eventually(
        lambda: "RabbitMQ is not reachable yet" in log.read_text(), what="RabbitMQ's refusal"
    )
    text = log.read_text()
    for secret in (PG_SECRET, AMQP_SECRET, REDIS_SECRET):
        assert secret not in text

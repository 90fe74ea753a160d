"""Malformed input sent straight to Temporal fails the run at once, typed, and writes nothing.

Every input here bypasses pydantic on the client side: the bytes go to the server as they are
(a plain client with a raw payload, or the `temporal` CLI), as an adversary would send them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from acci.activities.models import (
    COMMAND_WORKFLOW,
    MAX_PAYLOAD_DEPTH,
    PROJECTION_WORKFLOW,
    command_workflow_id,
)
from acci.domain.errors import CommandValidationError
from acci.workers.devserver import temporal_binary
from acci.workers.settings import Settings
from acci.workers.temporal_client import command_result
from acci.workflows.command import CommandWorkflow
from tests.integration.conftest import count_rows
from tests.workflows.helpers import OPERATOR_JSON
from tests.workflows.test_operator_doors import run, temporal_execute

# A failed run is reported within this; a wedged one (the old behaviour) never is.
FAILS_WITHIN = 15.0


def _command(**fields: object) -> dict[str, object]:
    """A well-formed CreateTenant command (it would be stored), with ``fields`` replaced."""
    tenant = f"bad-{uuid.uuid4().hex[:8]}"
    command: dict[str, object] = {
        "command_id": str(uuid.uuid4()),
        "tenant_id": tenant,
        "command_type": "CreateTenant",
        "payload": {"name": "Malformed Corp"},
        "principal": OPERATOR_JSON,
    }
    command.update(fields)
    return command


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _nested(depth: int) -> bytes:
    """A command whose payload's ``name`` is ``depth`` lists deep (text, not built: json.dumps
    would hit Python's own recursion limit first)."""
    command = _command(payload="PAYLOAD")
    return _json(command).replace(b'"PAYLOAD"', b'{"name":' + b"[" * depth + b"]" * depth + b"}")


def _with_raw_text(**texts: str) -> bytes:
    """A command with raw JSON text spliced in for some of its fields' values."""
    command = _command(**{name: f"RAW-{name}" for name in texts})
    data = _json(command)
    for name, text in texts.items():
        data = data.replace(f'"RAW-{name}"'.encode(), text.encode())
    return data


JSON = {"encoding": b"json/plain"}

# (what, encoding metadata, bytes, a part of the message that says what was wrong)
BAD_INPUTS = [
    ("not an object", JSON, b'"CreateTenant"', "Input should be an object"),
    ("a list", JSON, b"[1, 2]", "Input should be an object"),
    ("null", JSON, b"null", "Input should be an object"),
    ("not JSON", JSON, b"{command_id: 1", "Invalid JSON"),
    ("binary null", {"encoding": b"binary/null"}, b"", "got an input encoded as 'binary/null'"),
    ("binary bytes", {"encoding": b"binary/plain"}, b"\x00\x01", "encoded as 'binary/plain'"),
    ("a malformed command id", JSON, _json(_command(command_id="abc")), "command_id"),
    ("a numeric tenant id", JSON, _json(_command(tenant_id=42)), "tenant_id"),
    (
        "no command type",
        JSON,
        _json({k: v for k, v in _command().items() if k != "command_type"}),
        "command_type: Field required",
    ),
    ("an unknown field", JSON, _json(_command(priority="high")), "priority: Extra inputs"),
    (
        "a non-string metadata value",
        JSON,
        _json(_command(metadata={"request_id": 7})),
        "metadata.request_id",
    ),
    ("a list as payload", JSON, _json(_command(payload=["name", "x"])), "payload"),
    ("JSON nested 500 levels", JSON, _nested(500), "recursion limit"),
    (
        f"a payload nested past {MAX_PAYLOAD_DEPTH} levels",
        JSON,
        _nested(MAX_PAYLOAD_DEPTH + 5),
        f"nested more than {MAX_PAYLOAD_DEPTH} levels",
    ),
    (
        "a lone surrogate escape",
        JSON,
        _with_raw_text(tenant_id=r'"t\ud800"'),
        "the input has a string at 'tenant_id' that contains a lone surrogate",
    ),
    (
        "a lone surrogate in the payload",
        JSON,
        _with_raw_text(payload=r'{"name": "x\udfff"}'),
        "the input has a string at 'payload.name' that contains a lone surrogate",
    ),
    (
        "invalid UTF-8 in the payload",
        JSON,
        _json(_command(payload={"name": "PLACE"})).replace(b"PLACE", b"\xff\xfe\xc3("),
        "Invalid JSON",
    ),
]


@pytest.mark.parametrize(
    ("encoding", "data", "says"),
    [pytest.param(e, d, s, id=what) for what, e, d, s in BAD_INPUTS],
)
async def test_malformed_input_fails_the_run_at_once_with_a_typed_error(
    worker: Client,
    settings: Settings,
    pool: AsyncConnectionPool,
    encoding: dict[str, bytes],
    data: bytes,
    says: str,
) -> None:
    before = await count_rows(pool)
    error = await _fails(worker, settings, RawValue(Payload(metadata=encoding, data=data)))
    assert says in error.message
    assert await count_rows(pool) == before


async def test_a_start_without_any_input_fails_at_once(
    worker: Client, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="temporalio.workflow"):
        error = await _fails(worker, settings)
    assert "expected a JSON object, got no input" in error.message
    # The worker's log has it as one line, as a rejection by the activity (README, "Logs").
    (line,) = [r for r in caplog.records if r.getMessage().startswith("command rejected")]
    assert getattr(line, "error_type", None) == "CommandValidationError"
    assert "got no input" in getattr(line, "error", "")


@pytest.mark.parametrize(
    "forged",
    [
        {"correlation_id": "forged", "command_type": "DeleteTenant"},
        {"causation_id": "someone-elses-command"},
        {"actor": "admin"},
        {"Tenant-Id": "other-tenant"},
    ],
)
async def test_metadata_cannot_forge_envelope_fields_and_nothing_is_stored(
    worker: Client, settings: Settings, pool: AsyncConnectionPool, forged: dict[str, str]
) -> None:
    before = await count_rows(pool)
    # Otherwise a valid command: without the refusal it would be stored, forged fields and all.
    command = _command(metadata={"request_id": "r-1", **forged})
    error = await _fails(worker, settings, RawValue(Payload(metadata=JSON, data=_json(command))))
    for key in forged:
        assert repr(key) in error.message
    assert "fields the system records" in error.message
    assert await count_rows(pool) == before


async def test_acci_clients_see_a_malformed_input_as_a_validation_error(
    worker: Client, settings: Settings
) -> None:
    command_id = uuid.uuid4()
    await worker.start_workflow(
        COMMAND_WORKFLOW,
        RawValue(Payload(metadata=JSON, data=b'{"command_id": "abc"}')),
        id=command_workflow_id(command_id),
        task_queue=settings.task_queue,
    )
    # What acci does with a command's run: its failure as the typed error it prints.
    handle = worker.get_workflow_handle_for(CommandWorkflow.run, command_workflow_id(command_id))
    with pytest.raises(CommandValidationError, match="invalid CommandWorkflow input: command_id"):
        await asyncio.wait_for(command_result(handle), FAILS_WITHIN)


async def test_the_temporal_cli_shows_the_failure_type_and_message(
    worker: Client, settings: Settings
) -> None:
    workflow_id = f"cmd-{uuid.uuid4()}"
    temporal = [str(temporal_binary()), "workflow"]
    address = ["--address", settings.temporal_address]
    code, out, err = await run(
        [
            *temporal,
            "execute",
            *address,
            "--type",
            COMMAND_WORKFLOW,
            "--task-queue",
            settings.task_queue,
            "--workflow-id",
            workflow_id,
            "--input",
            json.dumps(_command(tenant_id=42)),
        ],
        dict(os.environ),
        within=FAILS_WITHIN,
    )
    assert code != 0
    assert "tenant_id" in out + err

    code, out, err = await run(
        [*temporal, "show", *address, "--workflow-id", workflow_id, "--output", "json"],
        dict(os.environ),
    )
    assert code == 0, err
    (failed,) = [
        e["workflowExecutionFailedEventAttributes"]
        for e in json.loads(out)["events"]
        if "workflowExecutionFailedEventAttributes" in e
    ]
    failure = failed["failure"]
    assert failure["applicationFailureInfo"]["type"] == "CommandValidationError"
    assert failure["applicationFailureInfo"]["nonRetryable"] is True
    assert "tenant_id: Input should be a valid string" in failure["message"]


async def test_the_temporal_result_of_a_command_carries_its_position(
    worker: Client, settings: Settings
) -> None:
    command = _command()
    workflow_id = command_workflow_id(str(command["command_id"]))
    code, out, err = await temporal_execute(settings, workflow_id, command)
    assert code == 0, out + err
    result = json.loads(out)["result"]
    assert result["position"] == result["positions"][-1]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"null", "Input should be an object"),
        (b'{"config": {"name": "p", "batch_size": 0}}', "config.batch_size"),
        (b'{"config": {"name": "p"}, "paused": [true]}', "paused"),
        (b'{"config": {"name": "\xff"}}', "Invalid JSON"),
    ],
)
async def test_a_projection_started_with_malformed_input_fails_at_once(
    worker: Client, settings: Settings, data: bytes, says: str
) -> None:
    error = await _fails(
        worker,
        settings,
        RawValue(Payload(metadata=JSON, data=data)),
        workflow=PROJECTION_WORKFLOW,
        error_type="ProjectionValidationError",
    )
    assert says in error.message


@pytest.mark.parametrize(
    ("workflow", "data", "says"),
    [
        ("RebuildReadModelWorkflow", b'{"read_model": "users", "version": -1}', "version"),
        ("RebuildReadModelWorkflow", b"[1]", "Input should be an object"),
        ("EventMigrationWorkflow", b'{"event_types": "TenantRenamed"}', "event_types"),
        ("BackupWorkflow", b'{"tenant": 5}', "tenant"),
        ("RestoreWorkflow", b"null", "Input should be an object"),
        ("VerifyWorkflow", b'{"sample": "many"}', "sample"),
        ("SnapshotWorkflow", b'{"after": 7}', "after"),
    ],
)
async def test_an_operator_job_started_with_malformed_input_fails_at_once(
    worker: Client, settings: Settings, workflow: str, data: bytes, says: str
) -> None:
    # A plain `temporal workflow start` of a job: its run fails, typed, instead of its workflow
    # task failing for ever with the run left running.
    error = await _fails(
        worker,
        settings,
        RawValue(Payload(metadata=JSON, data=data)),
        workflow=workflow,
        error_type="JobValidationError",
    )
    assert error.message.startswith(f"invalid {workflow} input: "), error.message
    assert says in error.message, error.message


async def test_a_rebuild_of_a_read_model_no_application_installs_fails_at_once(
    worker: Client, settings: Settings
) -> None:
    handle = await worker.start_workflow(
        "RebuildReadModelWorkflow",
        RawValue(Payload(metadata=JSON, data=b'{"read_model": "nosuch", "version": 3}')),
        id=f"malformed-{uuid.uuid4()}",
        task_queue=settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), FAILS_WITHIN)
    error = failed.value.cause.cause  # the run's step failed, not retried
    assert isinstance(error, ApplicationError), error
    assert (error.type, error.non_retryable) == ("NotFoundError", True)
    assert "nosuch" in error.message


async def _fails(
    worker: Client,
    settings: Settings,
    *args: RawValue,
    workflow: str = COMMAND_WORKFLOW,
    error_type: str = "CommandValidationError",
) -> ApplicationError:
    """Start ``workflow`` with ``args`` as they are; its failure, once it failed (fast)."""
    handle = await worker.start_workflow(
        workflow,
        args=list(args),
        id=f"malformed-{uuid.uuid4()}",
        task_queue=settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), FAILS_WITHIN)
    error = failed.value.cause
    assert isinstance(error, ApplicationError), error
    assert error.type == error_type
    assert error.non_retryable
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED
    return error

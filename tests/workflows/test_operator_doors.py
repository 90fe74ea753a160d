"""The doors operators use: the plain Temporal CLI, the acci CLI, and `acci dev --demo`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from temporalio.client import Client

from acci.eventstore.store import EventStore
from acci.workers.devserver import temporal_binary
from acci.workers.settings import Settings
from tests.workflows.conftest import free_port, worker_env
from tests.workflows.helpers import OPERATOR_JSON

ACCI = str(Path(sys.executable).with_name("acci"))


async def run(args: list[str], env: dict[str, str], *, within: float = 180) -> tuple[int, str, str]:
    """Run a process without blocking the event loop (the in-process worker needs it)."""
    process = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def temporal_execute(
    settings: Settings, workflow_id: str, command: Mapping[str, object]
) -> tuple[int, str, str]:
    """``temporal workflow execute`` of a CommandWorkflow, as the README shows it (JSON out)."""
    return await run(
        [
            str(temporal_binary()),
            "workflow",
            "execute",
            "--address",
            settings.temporal_address,
            "--type",
            "CommandWorkflow",
            "--task-queue",
            settings.task_queue,
            "--workflow-id",
            workflow_id,
            "--input",
            json.dumps(command),
            "--output",
            "json",
        ],
        dict(os.environ),
    )


async def test_the_plain_temporal_cli_starts_a_command_as_the_readme_shows(
    worker: Client, settings: Settings, store: EventStore
) -> None:
    command_id = uuid.uuid4()
    command = {
        "command_id": str(command_id),
        "tenant_id": "cli-plain",
        "command_type": "CreateTenant",
        "payload": {"name": "Started from the Temporal CLI"},
        "principal": OPERATOR_JSON,
    }
    code, out, err = await temporal_execute(settings, f"cmd-{command_id}", command)
    assert code == 0, out + err
    result = json.loads(out)["result"]
    assert result["aggregate_id"] == "cli-plain"
    assert result["stream_version"] == 1
    (event,) = await store.read_stream("cli-plain", "cli-plain")
    assert result["event_ids"] == [str(event.event_id)]
    assert result["positions"] == [str(event.position)]


async def test_acci_commands_print_results_and_typed_errors(
    worker: Client, settings: Settings
) -> None:
    env = worker_env(settings)
    command_id = str(uuid.uuid4())
    create = [
        ACCI,
        "tenant",
        "create",
        "--tenant",
        "cli-acme",
        "--name",
        "CLI Acme",
        "--command-id",
        command_id,
        "--json",
    ]
    code, out, err = await run(create, env)
    assert code == 0, err
    first = json.loads(out)
    assert (first["aggregate_id"], first["stream_version"]) == ("cli-acme", 1)
    assert first["positions"] and first["global_positions"]

    code, out, err = await run(create, env)
    assert code == 0, err
    # Re-sent: the first result, marked as a duplicate.
    assert json.loads(out) == {**first, "duplicate": True}

    code, out, err = await run(
        [
            ACCI,
            "user",
            "register",
            "bob",
            "--tenant",
            "cli-acme",
            "--email",
            "bob@acme.example",
            "--name",
            "Bob",
            "--role",
            "admin",
        ],
        env,
    )
    assert code == 0, err
    assert "RegisterUser: User bob -> v1" in out

    code, out, err = await run(
        [
            ACCI,
            "user",
            "register",
            "eve",
            "--tenant",
            "cli-acme",
            "--email",
            "not-an-email",
            "--name",
            "Eve",
        ],
        env,
    )
    assert code == 1
    assert "error (validation): invalid RegisterUser: email" in err

    code, out, err = await run(
        [ACCI, "tenant", "reactivate", "--tenant", "cli-acme"],
        env,
    )
    assert code == 1
    assert "error (domain):" in err and "only a suspended tenant can be reactivated" in err

    code, out, err = await run(
        [ACCI, "tenant", "suspend", "--tenant", "cli-acme", "--reason", "x", "--no-wait"], env
    )
    assert code == 0, err
    assert out.strip().startswith("cmd-")


async def test_acci_says_so_when_temporal_is_not_reachable(settings: Settings) -> None:
    env = {**worker_env(settings), "ACCI_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    code, _, err = await run([ACCI, "tenant", "create", "--tenant", "t", "--name", "T"], env)
    assert code == 1
    assert "Temporal is not reachable" in err and "acci dev" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("run_number", [1, 2])
async def test_acci_dev_runs_the_demo_and_keeps_runs_across_restarts(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, run_number: int
) -> None:
    data_dir = tmp_path_factory.getbasetemp() / "acci-dev-data"
    env = {
        **worker_env(settings),
        "ACCI_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "ACCI_TEMPORAL_UI_PORT": str(free_port()),
        "ACCI_DATA_DIR": str(data_dir),
        "ACCI_TASK_QUEUE": "acci-commands",
    }
    code, out, err = await run([ACCI, "dev", "--demo", "--exit"], env, within=300)
    assert code == 0, out + err
    assert "ACCI is up." in out and "Temporal Web UI" in out
    assert "REJECTED (validation)" in out and "REJECTED (domain)" in out
    assert "demo-acme    CreateTenant     Tenant demo-acme -> v1" in out
    assert (data_dir / "temporal.db").exists()
    stored = [line for line in out.splitlines() if " -> v" in line]
    assert len(stored) == 10, out  # the scenario's commands that store events
    if run_number == 2:
        # The dev server kept the first runs in its SQLite file, and the store its events:
        # every command that stored events is a re-send, and the refused ones are refused again
        # (the loser of the race too: nothing new is stored by a second run).
        assert all(line.endswith("[re-sent: first result]") for line in stored), out
        assert out.count(" REJECTED ") == 3, out


@asynccontextmanager
async def acci_dev(
    env: dict[str, str], tmp_path: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, bytes]]:
    """``acci dev`` started with ``env`` and its output up to "Press Ctrl-C to stop."; killed
    at the end if the block has not stopped it (its stderr goes to ``tmp_path/stderr.log``)."""
    with (tmp_path / "stderr.log").open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            ACCI, "dev", env=env, stdout=asyncio.subprocess.PIPE, stderr=errors
        )
        assert process.stdout is not None
        try:
            output = b""
            while b"Press Ctrl-C to stop." not in output:
                line = await asyncio.wait_for(process.stdout.readline(), 120)
                assert line, (tmp_path / "stderr.log").read_text()
                output += line
            yield process, output
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_acci_dev_stops_cleanly_on_ctrl_c(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **worker_env(settings),
        "ACCI_TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
        "ACCI_TEMPORAL_UI_PORT": str(free_port()),
        "ACCI_DATA_DIR": str(tmp_path / "data"),
    }
    async with acci_dev(env, tmp_path) as (process, output):
        assert f"127.0.0.1:{port}".encode() in output
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 60)
    assert code == 0, (tmp_path / "stderr.log").read_text()
    # The dev server went down with it.
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass

"""An installed application whose own code fails (a bug in its decision) ends the command at
once with a typed error, through ``acci`` and a worker process that installed it: it is not
retried for ever, nothing is stored, the audit log and the worker's log say what happened."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from acci.workers.settings import Settings
from tests.workflows.conftest import unique
from tests.workflows.test_durability import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
ACCI = str(Path(sys.executable).with_name("acci"))


@pytest.fixture
def faulty_worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    queue = f"acci-faulty-{uuid.uuid4().hex[:8]}"
    process = WorkerProcess(settings, queue, tmp_path / "worker.log")
    process._env |= {"ACCI_APPS": "tests.workflows.faulty_app", "PYTHONPATH": str(ROOT)}
    yield process
    if process.process is not None and process.process.poll() is None:
        process.process.kill()
        process.process.wait(10)


def acci(worker: WorkerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ACCI, *args], env=worker._env, capture_output=True, text=True, timeout=90, check=False
    )


async def test_a_bug_in_an_applications_decision_ends_the_command_at_once(
    settings: Settings, pool: AsyncConnectionPool, faulty_worker: WorkerProcess, tmp_path: Path
) -> None:
    await faulty_worker.start()
    tenant = unique("faulty")
    created = acci(faulty_worker, "tenant", "create", "--tenant", tenant, "--name", "Faulty")
    assert created.returncode == 0, created.stderr

    broken = {"gizmo_id": "g1", "name": "G", "fail": True}
    sent = acci(
        faulty_worker, "command", "MakeGizmo", "--tenant", tenant, "--data", json.dumps(broken)
    )
    assert (sent.returncode, sent.stdout) == (1, ""), sent.stderr
    assert sent.stderr.splitlines()[-1] == (
        "error (handler): MakeGizmo failed while deciding: RuntimeError: the gizmo's decide has"
        " a bug (a fault in the application's code: the command is not retried; the worker's"
        " log has the traceback)"
    )
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM event_store.events WHERE tenant_id = %s AND aggregate_id = 'g1'",
            (tenant,),
        )
        assert await cur.fetchone() == (0,)
        cur = await conn.execute(
            "SELECT outcome, error_type FROM audit.command_attempts"
            " WHERE tenant_id = %s AND command_type = 'MakeGizmo'",
            (tenant,),
        )
        assert await cur.fetchall() == [("rejected", "HandlerError")]
    log = (tmp_path / "worker.log").read_text()
    assert "the application's code failed" in log and "RuntimeError" in log

    # The same application's sound commands go through.
    sound = {"gizmo_id": "g2", "name": "G"}
    made = acci(
        faulty_worker, "command", "MakeGizmo", "--tenant", tenant, "--data", json.dumps(sound)
    )
    assert made.returncode == 0, made.stderr
    assert faulty_worker.stop() == 0

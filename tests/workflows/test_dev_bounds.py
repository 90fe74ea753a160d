"""`acci dev` bounds its own disk: the dev server keeps closed runs for ACCI_DEV_RETENTION_HOURS,
its output and ACCI's log rotate, and `acci health` reports the history file's size."""

from __future__ import annotations

import asyncio
import io
import json
import signal
from pathlib import Path

from psycopg_pool import AsyncConnectionPool
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from acci.workers.devserver import copy_rotating
from acci.workers.settings import Settings
from tests.workflows.conftest import free_port, worker_env
from tests.workflows.test_operator_doors import ACCI, acci_dev, run


async def test_acci_dev_sets_its_retention_and_acci_health_reports_the_history_size(
    settings: Settings, pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    port, metrics_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    env = {
        **worker_env(settings),
        "ACCI_TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
        "ACCI_TEMPORAL_UI_PORT": str(free_port()),
        "ACCI_DATA_DIR": str(data_dir),
        "ACCI_DEV_RETENTION_HOURS": "2",
        "ACCI_METRICS_PORT": str(metrics_port),
    }
    async with acci_dev(env, tmp_path) as (process, output):
        try:
            assert b"runs kept 2h after they close" in output
            client = await Client.connect(f"127.0.0.1:{port}")
            described = await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace="default")
            )
            retention = described.config.workflow_execution_retention_ttl.ToTimedelta()
            assert retention.total_seconds() == 2 * 3600

            _, out, err = await run([ACCI, "health", "--json"], env)
            report = json.loads(out)
            assert report["dev_server_history_bytes"] > 0, out + err
            _, out, err = await run([ACCI, "health"], env)
            assert "dev server history" in out and "closed runs kept 2h" in out, out + err
        finally:
            process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.wait(), 60)
    assert (data_dir / "temporal.log").exists()


def test_the_dev_servers_output_is_copied_into_a_file_that_rotates(tmp_path: Path) -> None:
    settings = Settings(log_max_bytes=4_096, log_backups=2)
    output = io.BytesIO(b"".join(b"dev server line %04d\n" % i for i in range(2_000)))
    copy_rotating(output, tmp_path / "temporal.log", settings)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["temporal.log", "temporal.log.1", "temporal.log.2"]
    assert all(p.stat().st_size <= 4_096 for p in tmp_path.iterdir())
    assert (tmp_path / "temporal.log").read_text().splitlines()[-1] == "dev server line 1999"

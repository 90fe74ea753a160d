"""What the worker's /metrics and the Temporal SDK's endpoint show, against real services.

Commands by outcome, appends, a paused projection's growing lag, a CLI process's query times
(through the shared tally in Redis), bounded tenant labels, and valid Prometheus text on both
endpoints (prometheus_client's parser, and ``promtool check metrics`` where it is installed).
"""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from acci.domain.errors import CommandValidationError, DomainError
from acci.workers.metrics_commands import OTHER
from acci.workers.settings import Settings
from acci.workers.temporal_client import execute_command
from acci.workers.worker import running_worker
from tests.stack_files import promtool
from tests.workflows.conftest import RABBITMQ_URL, eventually, free_port, worker_env
from tests.workflows.helpers import command, send
from tests.workflows.test_durability import WorkerProcess
from tests.workflows.test_operator_doors import ACCI, run

TENANT_LABELS = 2


@pytest.fixture(scope="module")
def settings(database_url: str, temporal_address: str) -> Settings:
    return Settings(
        database_url=database_url,  # type: ignore[arg-type]
        temporal_address=temporal_address,
        task_queue=f"acci-metrics-{uuid.uuid4().hex[:8]}",
        rabbitmq_url=RABBITMQ_URL,  # type: ignore[arg-type]
        cache_prefix=f"acci-test-{uuid.uuid4().hex[:12]}",
        projection_idle_ms=300,
        metrics_port=free_port(),
        temporal_metrics_port=0,
        metrics_tenant_labels=TENANT_LABELS,
    )


@pytest_asyncio.fixture(scope="module")
async def worker(settings: Settings, temporal_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    async with running_worker(settings, temporal_env.client):
        yield temporal_env.client


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


async def scrape(settings: Settings) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the worker's /metrics, by name and labels (parsed, so it must parse)."""
    text = await asyncio.to_thread(fetch, settings.metrics_port)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def promtool_check(text: str) -> None:
    """``promtool check metrics`` on ``text``."""
    checked = subprocess.run(
        [promtool(), "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()


async def test_command_outcomes_are_counted_by_type(worker: Client, settings: Settings) -> None:
    q = settings.task_queue
    before = await scrape(settings)
    await send(worker, q, "m-ok", "CreateTenant", name="Ok")
    with pytest.raises(DomainError):
        await send(worker, q, "m-ok", "CreateTenant", name="Again")
    with pytest.raises(CommandValidationError):
        await send(worker, q, "m-ok", "CreateTenant")  # no name
    resend = command("m-re", "CreateTenant", name="Re")
    await execute_command(worker, resend, task_queue=q)
    await execute_command(worker, resend.model_copy(), task_queue=q)
    after = await scrape(settings)

    def delta(outcome: str) -> float:
        key = ("acci_commands_total", {"command_type": "CreateTenant", "outcome": outcome})
        return value(after, key[0], **key[1]) - value(before, key[0], **key[1])

    assert delta("ok") == 2
    assert delta("domain") == 1
    assert delta("validation") == 1

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Five attempts, each timed: two stored, one refused by the rule, one malformed, one re-sent.
    assert moved("acci_command_seconds_count", command_type="CreateTenant") == 5
    assert moved("acci_append_seconds_count") >= 2
    assert moved("acci_events_appended_total", aggregate_type="Tenant") == 2
    assert moved("acci_events_published_total") >= 2
    assert moved("acci_publish_seconds_count") >= 1
    # The projections read the two new events in the global order.
    assert moved("acci_read_all_batch_seconds_count") >= 1


async def test_a_resent_command_counts_as_resent(worker: Client, settings: Settings) -> None:
    q = settings.task_queue
    sent = command("m-resent", "CreateTenant", name="Resent")
    await execute_command(worker, sent, task_queue=q)
    before = await scrape(settings)
    # A second run of the same command id (the first run finished): the store answers it.
    await execute_command(worker, sent, task_queue=q)
    after = await scrape(settings)
    labels = {"command_type": "CreateTenant", "outcome": "resent"}
    resent = value(after, "acci_commands_total", **labels)
    assert resent - value(before, "acci_commands_total", **labels) == 1


async def test_tenant_labels_are_bounded(worker: Client, settings: Settings) -> None:
    for i in range(TENANT_LABELS + 2):
        await send(worker, settings.task_queue, f"m-bound-{i}", "CreateTenant", name=f"B{i}")
    samples = await scrape(settings)
    tenants = {
        dict(labels)["tenant"] for name, labels in samples if name == "acci_tenant_commands_total"
    }
    assert OTHER in tenants
    # The counter is the process's: workers of earlier test modules labelled their own tenants.
    # This module's worker (its tenants are m-…) gave no more than its bound their own label.
    ours = {t for t in tenants if t.startswith("m-")}
    assert 0 < len(ours) <= TENANT_LABELS, ours


async def test_a_paused_projection_shows_its_growing_lag(
    worker: Client, settings: Settings
) -> None:
    q = settings.task_queue
    await send(worker, q, "m-pause", "CreateTenant", name="P")

    async def caught_up() -> bool:
        return (
            value(await scrape(settings), "acci_projection_lag_events", projection="tenants") == 0
        )

    await eventually(caught_up, within=20, what="tenants caught up")
    env = worker_env(settings)
    code, out, err = await run([ACCI, "projections", "pause", "tenants"], env)
    assert code == 0, out + err
    try:
        await send(worker, q, "m-pause", "RenameTenant", name="P2")
        await send(worker, q, "m-pause", "RenameTenant", name="P3")

        async def lagging() -> bool:
            samples = await scrape(settings)
            paused = value(samples, "acci_projection_state", projection="tenants", state="paused")
            lag = value(samples, "acci_projection_lag_events", projection="tenants")
            return paused == 1 and lag >= 2

        await eventually(lagging, within=20, what="a paused projection's lag on /metrics")
        samples = await scrape(settings)
        assert value(samples, "acci_projection_lag_seconds", projection="tenants") > 0
        assert value(samples, "acci_projection_state", projection="tenants", state="running") == 0
        assert ("acci_projection_dead_letters", frozenset({("projection", "tenants")})) in samples
        assert ("acci_event_horizon_lag_events", frozenset()) in samples
    finally:
        code, out, err = await run([ACCI, "projections", "resume", "tenants"], env)
        assert code == 0, out + err
    await eventually(caught_up, within=20, what="tenants caught up after resuming")


async def test_a_cli_query_shows_in_the_workers_metrics(worker: Client, settings: Settings) -> None:
    await send(worker, settings.task_queue, "m-query", "CreateTenant", name="Q")
    labels = {"query": "GetTenantDetails"}
    before = value(await scrape(settings), "acci_query_seconds_count", **labels)
    env = worker_env(settings)
    code, out, err = await run([ACCI, "query", "GetTenantDetails", "--tenant", "m-query"], env)
    assert code == 0, out + err

    async def counted() -> bool:
        samples = await scrape(settings)
        return value(samples, "acci_query_seconds_count", **labels) >= before + 1

    await eventually(counted, within=10, what="the CLI's query in the worker's metrics")


async def test_the_worker_exposition_passes_promtool(worker: Client, settings: Settings) -> None:
    await send(worker, settings.task_queue, "m-text", "CreateTenant", name="T")
    text = await asyncio.to_thread(fetch, settings.metrics_port)
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {"acci_commands", "acci_append_seconds", "acci_projection_state"} <= families
    promtool_check(text)


async def test_the_worker_process_serves_the_sdks_metrics(
    worker: Client, settings: Settings, tmp_path: Path
) -> None:
    sdk_port = free_port()
    process = WorkerProcess(
        settings.model_copy(update={"metrics_port": free_port()}),
        f"acci-sdk-{uuid.uuid4().hex[:8]}",
        tmp_path / "worker.log",
    )
    process._env["ACCI_TEMPORAL_METRICS_PORT"] = str(sdk_port)
    await process.start()
    try:
        task_queue = process._env["ACCI_TASK_QUEUE"]
        await send(worker, task_queue, "m-sdk", "CreateTenant", name="Sdk")

        def sdk_text() -> str:
            return fetch(sdk_port)

        async def served() -> str | None:
            text = await asyncio.to_thread(sdk_text)
            names = {f.name for f in text_string_to_metric_families(text)}
            wanted = {"temporal_workflow_task_schedule_to_start_latency", "temporal_request"}
            return text if wanted <= names else None

        text = await eventually(served, within=30, what="the SDK's metrics")
        assert "temporal_sticky_cache_size" in text
        promtool_check(text)
    finally:
        assert process.stop() == 0

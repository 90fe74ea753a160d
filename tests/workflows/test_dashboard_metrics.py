"""Every metric the ACCI dashboard (ops/grafana/dashboards/acci.json) reads is exported by a live
worker: ACCI's own on its metrics port, the Temporal SDK's on the SDK runtime's Prometheus port."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.runtime import Runtime, TelemetryConfig

from acci.domain.errors import DomainError
from acci.workers.converter import DATA_CONVERTER
from acci.workers.metrics_temporal import prometheus_config
from acci.workers.settings import Settings
from acci.workers.worker import running_worker
from tests.stack_files import PROMETHEUS_SERIES, dashboard, exported_names, expressions
from tests.stack_files import metric_names as promql_names
from tests.workflows.conftest import eventually, free_port, unique
from tests.workflows.helpers import send


@dataclass(frozen=True)
class Endpoints:
    acci: str
    sdk: str


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


@pytest_asyncio.fixture(scope="module")
async def endpoints(settings: Settings, temporal_address: str) -> AsyncIterator[Endpoints]:
    """A worker with both metrics endpoints on free ports, after an accepted and a rejected
    command (so labelled families have samples)."""
    sdk_port, acci_port = free_port(), free_port()
    # The SDK's metrics belong to the runtime of the worker's client, configured as
    # `acci worker` configures its own (a runtime of its own: one is process-wide).
    runtime = Runtime(telemetry=TelemetryConfig(metrics=prometheus_config(f"127.0.0.1:{sdk_port}")))
    client = await Client.connect(
        temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
        runtime=runtime,
    )
    settings = settings.model_copy(update={"metrics_host": "127.0.0.1", "metrics_port": acci_port})
    async with running_worker(settings, client):
        q, t = settings.task_queue, unique("dash")
        await send(client, q, t, "CreateTenant", name="Dashboard Corp")
        await send(client, q, t, "SuspendTenant", reason="audit")
        with pytest.raises(DomainError):
            await send(client, q, t, "SuspendTenant", reason="again")
        yield Endpoints(
            acci=f"http://127.0.0.1:{acci_port}/metrics",
            sdk=f"http://127.0.0.1:{sdk_port}/metrics",
        )


def dashboard_names(prefix: str) -> dict[str, set[str]]:
    """Metric name -> titles of the panels reading it, for names starting with ``prefix``."""
    found: dict[str, set[str]] = {}
    for title, expr in expressions(dashboard()):
        for name in promql_names(expr) - PROMETHEUS_SERIES:
            if name.startswith(prefix):
                found.setdefault(name, set()).add(title)
    return found


async def missing_from(url: str, wanted: dict[str, set[str]]) -> dict[str, set[str]]:
    exported = exported_names([await asyncio.to_thread(scrape, url)])
    return {name: titles for name, titles in wanted.items() if name not in exported}


async def test_every_acci_metric_on_the_dashboard_is_on_the_workers_metrics_endpoint(
    endpoints: Endpoints,
) -> None:
    wanted = dashboard_names("acci_")
    assert wanted
    missing = await missing_from(endpoints.acci, wanted)
    assert not missing, f"the dashboard reads metrics the worker does not export: {missing}"


async def test_every_temporal_metric_on_the_dashboard_is_on_the_sdk_metrics_endpoint(
    endpoints: Endpoints,
) -> None:
    wanted = dashboard_names("temporal_")
    assert wanted
    missing: dict[str, set[str]] = {}

    async def none_missing() -> bool:
        # The SDK records some of its metrics (task latencies) a moment after the task.
        missing.clear()
        missing.update(await missing_from(endpoints.sdk, wanted))
        return not missing

    try:
        await eventually(none_missing, within=10, what="the SDK's metrics")
    except pytest.fail.Exception:
        pass
    assert not missing, f"the dashboard reads metrics the Temporal SDK does not export: {missing}"


def test_only_acci_and_sdk_metrics_and_prometheus_series_are_read() -> None:
    names = {n for _, expr in expressions(dashboard()) for n in promql_names(expr)}
    assert names == set(dashboard_names("acci_")) | set(dashboard_names("temporal_")) | (
        names & PROMETHEUS_SERIES
    )

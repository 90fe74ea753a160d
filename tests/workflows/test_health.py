"""Health: the worker's /healthz and /readyz, and `acci health`, against real services: ready
with every check, and not ready, naming why, when Redis is down or a projection is paused."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from acci.readmodels.installed import projection_names
from acci.workers.settings import Settings
from acci.workers.worker import running_worker
from tests.workflows.conftest import eventually, free_port, worker_env
from tests.workflows.test_operator_doors import ACCI, run
from tests.workflows.test_query_doors import RedisServer

SERVICES = ["PostgreSQL", "event store", "Redis", "RabbitMQ", "Temporal"]


@pytest_asyncio.fixture(scope="module")
async def redis_server() -> AsyncIterator[RedisServer]:
    """A private redis-server for this module's worker: the tests kill it, never the shared one."""
    server = RedisServer()
    await server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest_asyncio.fixture(scope="module")
async def served(
    settings: Settings,
    pool: AsyncConnectionPool,
    temporal_env: WorkflowEnvironment,
    redis_server: RedisServer,
) -> AsyncIterator[Settings]:
    """A worker serving its HTTP endpoint on a free port; yields its settings."""
    mine = settings.model_copy(
        update={
            "metrics_port": free_port(),
            "redis_url": SecretStr(redis_server.url),
            "health_timeout_ms": 1_000,
        }
    )
    async with running_worker(mine, temporal_env.client):
        yield mine


def _get(settings: Settings, path: str) -> tuple[int, bytes]:
    url = f"http://{settings.metrics_host}:{settings.metrics_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()


async def get(settings: Settings, path: str) -> tuple[int, Any]:
    """GET ``path`` off the event loop (/readyz runs its checks on it); JSON bodies decoded."""
    status, body = await asyncio.to_thread(_get, settings, path)
    return status, body if path == "/metrics" else json.loads(body)


def _env(settings: Settings) -> dict[str, str]:
    return {
        **worker_env(settings),
        "ACCI_REDIS_URL": settings.redis_url.get_secret_value(),
        "ACCI_HEALTH_TIMEOUT_MS": str(settings.health_timeout_ms),
    }


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


async def test_the_worker_is_alive_ready_and_serves_its_metrics_on_one_port(
    served: Settings,
) -> None:
    assert await get(served, "/healthz") == (200, {"status": "alive"})

    async def ready() -> Any:
        status, report = await get(served, "/readyz")
        return report if status == 200 else None

    report = await eventually(ready, what="the worker to be ready")
    assert report["status"] == "ready" and report["failing"] == []
    names = [c["name"] for c in report["checks"]]
    assert names == [
        *SERVICES[:2],
        *(f"projection {n}" for n in sorted(projection_names())),
        *SERVICES[2:],
    ]
    for check in report["checks"]:
        assert check["ok"] and check["detail"] and check["latency_ms"] >= 0, check
    status, metrics = await get(served, "/metrics")
    assert status == 200
    assert any(f.name == "acci_projection_lag_events" for f in _families(metrics))
    assert (await get(served, "/nowhere"))[0] == 404


def _families(text: bytes) -> list[Any]:
    return list(text_string_to_metric_families(text.decode()))


async def test_acci_health_prints_every_check_and_exits_0_when_ready(served: Settings) -> None:
    code, out, err = await run([ACCI, "health", "--json"], _env(served))
    assert code == 0, out + err
    report = json.loads(out)
    assert set(report) == {"status", "failing", "checks", "dev_server_history_bytes"}
    assert report["status"] == "ready"
    assert set(SERVICES) <= set(_by_name(report))
    for check in report["checks"]:
        assert set(check) == {"name", "ok", "detail", "latency_ms"}
    code, out, _ = await run([ACCI, "health"], _env(served))
    assert code == 0 and out.startswith("ready\n")
    assert "ok   Temporal" in out


async def test_a_paused_projection_makes_the_worker_not_ready_naming_it(served: Settings) -> None:
    env = _env(served)
    code, out, err = await run([ACCI, "projections", "pause", "users"], env)
    assert code == 0, out + err
    try:
        status, report = await get(served, "/readyz")
        assert status == 503
        assert report["failing"] == ["projection users"]
        assert _by_name(report)["projection users"]["detail"].startswith("paused at ")
        code, out, _ = await run([ACCI, "health"], env)
        assert code == 1
        assert out.startswith("NOT READY: projection users\n")
        assert "DOWN projection users" in out
    finally:
        code, out, err = await run([ACCI, "projections", "resume", "users"], env)
        assert code == 0, out + err
    assert (await get(served, "/readyz"))[0] == 200


async def test_with_redis_down_the_worker_is_not_ready_and_says_redis(
    served: Settings, redis_server: RedisServer
) -> None:
    assert (await get(served, "/readyz"))[0] == 200
    redis_server.kill()
    try:
        status, report = await get(served, "/readyz")
        assert status == 503
        assert report["status"] == "not ready" and report["failing"] == ["Redis"]
        redis = _by_name(report)["Redis"]
        assert not redis["ok"] and f"127.0.0.1:{redis_server.port}" in redis["detail"]
        # Still alive: only readiness depends on the services.
        assert (await get(served, "/healthz"))[0] == 200
        code, out, _ = await run([ACCI, "health", "--json"], _env(served))
        assert code == 1 and json.loads(out)["failing"] == ["Redis"]
    finally:
        await redis_server.start()

    async def ready_again() -> bool:
        return (await get(served, "/readyz"))[0] == 200

    await eventually(ready_again, what="ready again, with Redis back on its port")

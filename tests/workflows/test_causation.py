"""A command's events say what caused them: its id, also when the sender named no cause."""

from __future__ import annotations

import json

from temporalio.client import Client

from acci.eventstore.store import EventStore
from acci.workers.settings import Settings
from acci.workers.temporal_client import execute_command
from tests.workflows.conftest import Captured, unique
from tests.workflows.helpers import command


async def test_a_commands_events_are_caused_by_it_in_the_store_and_on_rabbitmq(
    worker: Client, settings: Settings, store: EventStore, captured: Captured
) -> None:
    tenant = unique("caused")
    sent = command(tenant, "CreateTenant", name="Caused Corp")
    assert "causation_id" not in sent.metadata
    result = await execute_command(worker, sent, task_queue=settings.task_queue)
    caused_by = str(sent.command_id)

    stored = await store.command_events(tenant, sent.command_id)
    assert [e.event_id for e in stored] == result.event_ids
    assert [e.metadata.get("causation_id") for e in stored] == [caused_by]
    assert [e.metadata.get("correlation_id") for e in stored] == [caused_by]

    ids = {str(i) for i in result.event_ids}
    await captured.wait_for(ids)
    messages = [(p, body) for _, p, body in captured.messages if str(p.message_id) in ids]
    assert [(p.headers or {}).get("causation_id") for p, _ in messages] == [caused_by]
    assert [json.loads(body)["metadata"].get("causation_id") for _, body in messages] == [caused_by]

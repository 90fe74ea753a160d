"""The example application (examples/invoicing) through the real stack, as its users run it.

Installed as a package with an ``acci.apps`` entry point (``make`` does it), it is found by the
worker like any application: its commands go through ``CommandWorkflow`` (started with the plain
Temporal CLI or the client), its projection runs as a projection workflow, and its queries are
answered by the query bus, after the write when asked (read-your-writes).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from invoicing.domain import Invoice, InvoiceIssued, InvoiceLineAdded, InvoicePaid, InvoiceStatus
from invoicing.read_model import GetOpenInvoice, ListOpenInvoices, OpenInvoice
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from acci.domain.errors import DomainError
from acci.domain.registry import registry
from acci.eventstore.records import NO_STREAM, NewEvent, RecordedEvent
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.store import EventStore
from acci.readmodels.errors import NotFoundError
from acci.workers.apps import load_applications
from acci.workers.devserver import temporal_binary
from acci.workers.runtime import open_query_bus
from acci.workers.settings import Settings
from acci.workers.worker import running_worker
from tests.integration.projection_support import tenant_events
from tests.workflows.conftest import RABBITMQ_URL, unique
from tests.workflows.helpers import OPERATOR_JSON, send
from tests.workflows.test_operator_doors import run

OLD = unique("inv-old")  # the tenant whose invoices were stored before the worker started


@pytest.fixture(scope="module")
def settings(database_url: str, temporal_address: str) -> Settings:
    return Settings(
        database_url=database_url,  # type: ignore[arg-type]
        temporal_address=temporal_address,
        task_queue=f"acci-invoicing-{uuid.uuid4().hex[:8]}",
        rabbitmq_url=RABBITMQ_URL,  # type: ignore[arg-type]
        cache_prefix=f"acci-test-{uuid.uuid4().hex[:12]}",
        # Events written with SQL send no wake-up: a caught-up projection looks again soon.
        projection_idle_ms=200,
        # The projections' workflows move to this module's worker first: read-your-writes may
        # wait for that, not only for the write.
        query_consistency_timeout_ms=30_000,
        metrics_port=0,
    )


# --- invoices written before the worker started, one of them by an older version ---------------


async def append(store: EventStore, invoice: str, *events: Any, after: int = NO_STREAM) -> None:
    """Append ``events`` to an invoice of ``OLD`` as the command path would store them."""
    new = [NewEvent(*registry.encode(event)) for event in events]
    await store.append(
        OLD, invoice, "Invoice", new, command_id=uuid.uuid4(), expected_version=after
    )


async def append_v1_line(
    pool: AsyncConnectionPool, invoice: str, sequence: int, cents: int
) -> None:
    """An InvoiceLineAdded as version 1 wrote it (one amount), stored with plain SQL."""
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO event_store.events (event_id, tenant_id, aggregate_id, aggregate_type,"
            " sequence_number, event_type, event_version, data, command_id)"
            " VALUES (gen_random_uuid(), %s, %s, 'Invoice', %s, 'InvoiceLineAdded', 1, %s,"
            " gen_random_uuid())",
            (OLD, invoice, sequence, json.dumps({"description": "Setup", "amount_cents": cents})),
        )


@pytest_asyncio.fixture(scope="module")
async def stored_before_start(store: EventStore, pool: AsyncConnectionPool) -> None:
    load_applications()  # what every ACCI process does first: the entry points' applications
    issued = InvoiceIssued(customer="Initech", currency="EUR")
    # old-1: open, a v1 line (1250) then a v2 line (2 x 300).
    await append(store, "old-1", issued)
    await append_v1_line(pool, "old-1", 2, 1250)
    line = InvoiceLineAdded(description="Support", quantity=2, unit_price_cents=300)
    await append(store, "old-1", line, after=2)
    # old-2: paid; old-3: open and empty; old-4: a v1 line, then voided.
    await append(store, "old-2", issued, line, InvoicePaid(amount_cents=600))
    await append(store, "old-3", InvoiceIssued(customer="Umbrella", currency="GBP"))
    await append(store, "old-4", issued)
    await append_v1_line(pool, "old-4", 2, 99)
    await append(store, "old-4", InvoicePaid(amount_cents=99), after=2)


@pytest_asyncio.fixture(scope="module")
async def worker(
    settings: Settings, temporal_env: WorkflowEnvironment, stored_before_start: None
) -> AsyncIterator[Client]:
    """The module's worker, started once the old invoices are stored."""
    async with running_worker(settings, temporal_env.client):
        yield temporal_env.client


def row(invoice: OpenInvoice) -> dict[str, Any]:
    return invoice.model_dump(exclude={"tenant_id"})


async def folded_open_invoices(
    store: EventStore, repository: AggregateRepository, tenant: str
) -> list[dict[str, Any]]:
    """The tenant's open invoices as a fold of the store says: each Invoice loaded from its
    events (upcast on the way), its timestamps those of its first and last event."""
    streams: dict[str, list[RecordedEvent]] = {}
    for event in await tenant_events(store, tenant):
        if event.aggregate_type == "Invoice":
            streams.setdefault(event.aggregate_id, []).append(event)
    rows = []
    for invoice_id, events in streams.items():
        state = (await repository.load(Invoice, tenant, invoice_id)).state
        if state.status is InvoiceStatus.OPEN:
            rows.append(
                {
                    "invoice_id": invoice_id,
                    "customer": state.customer,
                    "currency": state.currency,
                    "line_count": state.lines,
                    "total_cents": state.total_cents,
                    "issued_at": events[0].created_at,
                    "last_updated": events[-1].created_at,
                    "version": events[-1].sequence_number,
                }
            )
    return sorted(rows, key=lambda r: (r["issued_at"], r["invoice_id"]))


async def test_the_projection_catches_up_on_invoices_stored_before_the_worker_started(
    worker: Client,
    settings: Settings,
    store: EventStore,
    repository: AggregateRepository,
) -> None:
    head = await store.head(tenant_id=OLD)
    async with open_query_bus(settings) as bus:
        listed = await bus.ask(ListOpenInvoices(tenant_id=OLD, consistent_with=head))
    expected = await folded_open_invoices(store, repository, OLD)
    assert [row(i) for i in listed.invoices] == expected
    assert [i["invoice_id"] for i in expected] == ["old-1", "old-3"]
    assert listed.total_cents == 1250 + 2 * 300


async def test_a_version_1_line_is_upcast_by_the_projection_and_the_aggregate(
    worker: Client, settings: Settings, store: EventStore, repository: AggregateRepository
) -> None:
    stored = await store.read_stream(OLD, "old-1", aggregate_type="Invoice")
    assert (stored[1].event_version, stored[1].data) == (
        2,
        {"description": "Setup", "quantity": 1, "unit_price_cents": 1250},
    )
    invoice = await repository.load(Invoice, OLD, "old-1")
    assert (invoice.state.lines, invoice.state.total_cents) == (2, 1850)
    async with open_query_bus(settings) as bus:
        shown = await bus.ask(
            GetOpenInvoice(tenant_id=OLD, invoice_id="old-1", consistent_with=stored[-1].position)
        )
    assert (shown.line_count, shown.total_cents, shown.version) == (2, 1850, 3)


# --- commands through Temporal, queries after them -----------------------------------------------


async def temporal_start(settings: Settings, tenant: str, command_type: str, **payload: Any) -> str:
    """Start a command with ``temporal workflow start`` as an operator would; its workflow id."""
    command_id = uuid.uuid4()
    command = {
        "command_id": str(command_id),
        "tenant_id": tenant,
        "command_type": command_type,
        "payload": payload,
        "principal": OPERATOR_JSON,
    }
    workflow_id = f"cmd-{command_id}"
    code, out, err = await run(
        [
            str(temporal_binary()),
            "workflow",
            "start",
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
        ],
        dict(os.environ),
    )
    assert code == 0, out + err
    return workflow_id


async def temporal_result(settings: Settings, workflow_id: str) -> dict[str, Any]:
    """``temporal workflow result`` of a command, as JSON."""
    code, out, err = await run(
        [
            str(temporal_binary()),
            "workflow",
            "result",
            "--address",
            settings.temporal_address,
            "--workflow-id",
            workflow_id,
            "--output",
            "json",
        ],
        dict(os.environ),
    )
    assert code == 0, out + err
    result: dict[str, Any] = json.loads(out)["result"]
    return result


async def open_tenant(worker: Client, settings: Settings, name: str) -> str:
    tenant = unique(name)
    await send(worker, settings.task_queue, tenant, "CreateTenant", name=name)
    return tenant


async def test_an_invoice_issued_with_the_temporal_cli_is_read_after_its_line_is_added(
    worker: Client, settings: Settings
) -> None:
    tenant = await open_tenant(worker, settings, "inv-acme")
    started = await temporal_start(
        settings, tenant, "IssueInvoice", invoice_id="inv-1", customer="Globex"
    )
    issued = await temporal_result(settings, started)
    assert (issued["aggregate_type"], issued["aggregate_id"]) == ("Invoice", "inv-1")
    assert issued["stream_version"] == 1

    added = await send(
        worker,
        settings.task_queue,
        tenant,
        "AddInvoiceLine",
        invoice_id="inv-1",
        description="Consulting",
        quantity=3,
        unit_price_cents=500,
    )
    assert added.stream_version == 2 and added.position is not None
    # No waiting here: the query bus waits until the projection has passed the line.
    async with open_query_bus(settings) as bus:
        invoice = await bus.ask(
            GetOpenInvoice(tenant_id=tenant, invoice_id="inv-1", consistent_with=added.position)
        )
        listed = await bus.ask(ListOpenInvoices(tenant_id=tenant, consistent_with=added.position))
    assert (invoice.customer, invoice.currency) == ("Globex", "EUR")
    assert (invoice.line_count, invoice.total_cents, invoice.version) == (1, 1500, 2)
    assert listed.invoices == [invoice] and listed.total_cents == 1500


async def count_events(pool: AsyncConnectionPool, tenant: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM event_store.events WHERE tenant_id = %s", (tenant,)
        )
        found = await cur.fetchone()
    assert found is not None
    return int(found[0])


async def test_rejected_invoice_commands_fail_with_a_domain_error_and_write_nothing(
    worker: Client, settings: Settings, pool: AsyncConnectionPool
) -> None:
    q = settings.task_queue
    tenant = await open_tenant(worker, settings, "inv-rejected")
    await send(worker, q, tenant, "IssueInvoice", invoice_id="inv-1", customer="Globex")
    await send(
        worker,
        q,
        tenant,
        "AddInvoiceLine",
        invoice_id="inv-1",
        description="A",
        unit_price_cents=700,
    )
    before = await count_events(pool, tenant)

    with pytest.raises(DomainError) as wrong_amount:
        await send(worker, q, tenant, "PayInvoice", invoice_id="inv-1", amount_cents=699)
    assert str(wrong_amount.value) == "invoice 'inv-1' totals 700 cents, not 699"
    assert wrong_amount.value.reason == "wrong_amount"
    assert await count_events(pool, tenant) == before

    await send(worker, q, tenant, "SuspendTenant", reason="unpaid")
    before = await count_events(pool, tenant)
    with pytest.raises(DomainError) as suspended:
        await send(worker, q, tenant, "IssueInvoice", invoice_id="inv-2", customer="Initech")
    assert str(suspended.value) == f"tenant {tenant!r} is suspended, not active"
    assert suspended.value.reason == "tenant_not_active"
    with pytest.raises(DomainError, match="is suspended, not active"):
        await send(worker, q, tenant, "PayInvoice", invoice_id="inv-1", amount_cents=700)
    assert await count_events(pool, tenant) == before


async def test_a_paid_invoice_leaves_the_open_invoices(worker: Client, settings: Settings) -> None:
    q = settings.task_queue
    tenant = await open_tenant(worker, settings, "inv-paying")
    for invoice, cents in (("inv-1", 1200), ("inv-2", 800)):
        await send(worker, q, tenant, "IssueInvoice", invoice_id=invoice, customer="Globex")
        await send(
            worker,
            q,
            tenant,
            "AddInvoiceLine",
            invoice_id=invoice,
            description="Work",
            unit_price_cents=cents,
        )
    paid = await send(worker, q, tenant, "PayInvoice", invoice_id="inv-1", amount_cents=1200)
    async with open_query_bus(settings) as bus:
        listed = await bus.ask(ListOpenInvoices(tenant_id=tenant, consistent_with=paid.position))
        assert [i.invoice_id for i in listed.invoices] == ["inv-2"]
        assert listed.total_cents == 800
        with pytest.raises(NotFoundError, match=f"no open invoice 'inv-1' in tenant '{tenant}'"):
            await bus.ask(
                GetOpenInvoice(tenant_id=tenant, invoice_id="inv-1", consistent_with=paid.position)
            )

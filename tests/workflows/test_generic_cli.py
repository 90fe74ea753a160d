"""`acci command <Type>` and `acci query <Type>` through a real worker: any installed type by name.

The example invoicing application is installed with the project (its ``acci.apps`` entry point):
the in-process worker runs its commands and its projection, and every `acci` process here finds
its types the same way. Built-in types go through the same two verbs.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from acci.eventstore.store import EventStore
from acci.workers.settings import Settings
from tests.integration.query_rows import require_redis
from tests.workflows.conftest import unique, worker_env
from tests.workflows.test_operator_doors import ACCI
from tests.workflows.test_projection_workflow import Cli


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """The module's settings: queries go through the shared Redis, under this module's prefix."""
    require_redis()
    return settings


@pytest.fixture(scope="module")
def env(settings: Settings) -> dict[str, str]:
    """An `acci` process's environment: this module's Temporal task queue, database and cache."""
    return worker_env(settings)


async def acci(env: dict[str, str], *args: str, stdin: str | None = None) -> Cli:
    """`acci …` as a process (the in-process worker keeps running meanwhile)."""
    process = await asyncio.create_subprocess_exec(
        ACCI,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    given = None if stdin is None else stdin.encode()
    out, err = await asyncio.wait_for(process.communicate(given), 120)
    assert process.returncode is not None
    return Cli(process.returncode, out.decode(), err.decode())


async def succeeds(env: dict[str, str], *args: str, stdin: str | None = None) -> Any:
    """`acci … --json` that must succeed: its output, parsed."""
    result = await acci(env, *args, "--json", stdin=stdin)
    assert result.code == 0, result.err
    return result.json()


async def created_tenant(env: dict[str, str], name: str) -> tuple[str, dict[str, Any]]:
    """A new tenant, created through the generic verb: its id and the command's result."""
    tenant = unique(name)
    data = json.dumps({"name": f"{name} Ltd"})
    return tenant, await succeeds(env, "command", "CreateTenant", "--tenant", tenant, "-d", data)


async def test_a_plugged_in_command_is_stored_and_its_query_reads_it_back(
    worker: Client, env: dict[str, str], store: EventStore, tmp_path: Path
) -> None:
    # A built-in command through the generic verb: its tenant_id comes from --tenant.
    tenant, created = await created_tenant(env, "generic-acme")
    assert (created["aggregate_id"], created["stream_version"]) == (tenant, 1)

    issue = tmp_path / "issue.json"
    issue.write_text(json.dumps({"invoice_id": "inv-1", "customer": "Bob"}), encoding="utf-8")
    command_id = str(uuid.uuid4())
    sent = ("command", "IssueInvoice", "--tenant", tenant, "--data", f"@{issue}")
    issued = await succeeds(env, *sent, "--command-id", command_id)
    assert (issued["aggregate_id"], issued["stream_version"]) == ("inv-1", 1)
    assert issued["command_id"] == command_id
    # Re-sent with its command id: the first result, marked as a duplicate.
    assert await succeeds(env, *sent, "--command-id", command_id) == {**issued, "duplicate": True}

    line = {"invoice_id": "inv-1", "description": "Consulting", "quantity": 2}
    added = await succeeds(
        env,
        *("command", "AddInvoiceLine", "--tenant", tenant, "--data", "-"),
        stdin=json.dumps({**line, "unit_price_cents": 1500}),
    )
    assert added["stream_version"] == 2

    # Read-your-writes: the query waits until the open invoices have passed the line.
    at = ("--consistent-with", added["position"])
    answer = await succeeds(env, "query", "ListOpenInvoices", "--tenant", tenant, *at)
    (invoice,) = answer["invoices"]
    assert invoice == {
        **invoice,
        "tenant_id": tenant,
        "invoice_id": "inv-1",
        "customer": "Bob",
        "currency": "EUR",
        "line_count": 1,
        "total_cents": 3000,
        "version": 2,
    }
    assert answer["total_cents"] == 3000
    # Without --json the answer is the same JSON.
    plain = await acci(env, "query", "ListOpenInvoices", "--tenant", tenant, *at)
    assert (plain.code, plain.json()) == (0, answer)

    events = await store.read_stream(tenant, "inv-1")
    assert [e.event_type for e in events] == ["InvoiceIssued", "InvoiceLineAdded"]
    assert [str(e.event_id) for e in events] == issued["event_ids"] + added["event_ids"]


async def test_built_in_queries_through_the_generic_verb(
    worker: Client, env: dict[str, str]
) -> None:
    tenant, created = await created_tenant(env, "generic-globex")
    at = ("--consistent-with", created["position"])
    details = await succeeds(env, "query", "GetTenantDetails", "--tenant", tenant, *at)
    assert (details["tenant_id"], details["name"], details["status"]) == (
        tenant,
        "generic-globex Ltd",
        "active",
    )
    # A query across tenants is asked without --tenant.
    page = await succeeds(
        env, "query", "ListTenants", "--data", '{"status": "active", "limit": 500}', *at
    )
    assert tenant in [t["tenant_id"] for t in page["items"]]


async def test_a_rejected_command_exits_1_and_stores_nothing(
    worker: Client, env: dict[str, str], store: EventStore
) -> None:
    tenant, _ = await created_tenant(env, "generic-initech")
    invoice = {"invoice_id": "inv-2"}
    await succeeds(
        env, "command", "IssueInvoice", "-t", tenant, "-d", json.dumps({**invoice, "customer": "C"})
    )
    line = {**invoice, "description": "Staplers", "unit_price_cents": 1000}
    added = await succeeds(env, "command", "AddInvoiceLine", "-t", tenant, "-d", json.dumps(line))

    command_id = uuid.uuid4()
    pay = json.dumps({**invoice, "amount_cents": 999})
    rejected = await acci(
        env, "command", "PayInvoice", "-t", tenant, "-d", pay, "--command-id", str(command_id)
    )
    assert (rejected.code, rejected.out) == (1, "")
    assert rejected.err == "error (domain): invoice 'inv-2' totals 1000 cents, not 999\n"
    assert await store.command_events(tenant, command_id) == []
    assert [e.event_type for e in await store.read_stream(tenant, "inv-2")] == [
        "InvoiceIssued",
        "InvoiceLineAdded",
    ]
    # Still open, as it was.
    at = ("--consistent-with", added["position"])
    still = await succeeds(
        env, "query", "GetOpenInvoice", "-t", tenant, "-d", json.dumps(invoice), *at
    )
    assert (still["invoice_id"], still["total_cents"], still["version"]) == ("inv-2", 1000, 2)


async def test_invalid_data_is_refused_without_starting_a_workflow(
    worker: Client, env: dict[str, str], store: EventStore
) -> None:
    tenant, _ = await created_tenant(env, "generic-umbrella")
    command_id = uuid.uuid4()
    refused = await acci(
        env,
        *("command", "IssueInvoice", "--tenant", tenant, "--command-id", str(command_id)),
        *("--data", '{"invoice_id": "inv-3", "customer": "D", "currency": "CHF"}'),
    )
    assert (refused.code, refused.out) == (1, "")
    assert refused.err.startswith("error (validation): invalid IssueInvoice: currency: Input")
    with pytest.raises(RPCError) as described:
        await worker.get_workflow_handle(f"cmd-{command_id}").describe()
    assert described.value.status is RPCStatusCode.NOT_FOUND
    assert await store.command_events(tenant, command_id) == []


async def test_a_missing_answer_is_not_found_and_no_wait_prints_the_workflow_id(
    worker: Client, env: dict[str, str]
) -> None:
    tenant, created = await created_tenant(env, "generic-hooli")
    missing = await acci(
        env,
        *("query", "GetOpenInvoice", "--tenant", tenant, "--data", '{"invoice_id": "inv-9"}'),
        *("--consistent-with", created["position"]),
    )
    assert (missing.code, missing.out) == (1, "")
    assert missing.err == f"error (not_found): no open invoice 'inv-9' in tenant '{tenant}'\n"

    command_id = uuid.uuid4()
    started = await succeeds(
        env,
        *("command", "IssueInvoice", "--tenant", tenant, "--no-wait"),
        *("--command-id", str(command_id), "--data", '{"invoice_id": "inv-9", "customer": "E"}'),
    )
    assert started == {"workflow_id": f"cmd-{command_id}"}
    result = await worker.get_workflow_handle(started["workflow_id"]).result()
    assert (result["aggregate_id"], result["stream_version"]) == ("inv-9", 1)

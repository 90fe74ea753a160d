"""Tracing: one command's trace across a real worker, dev server, PostgreSQL and RabbitMQ, and
nothing installed when tracing is off."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import WorkflowEnvironment

from acci.activities.models import projection_workflow_id
from acci.eventstore.messaging.messages import ReceivedEvent
from acci.eventstore.messaging.subscriber import EventSubscriber
from acci.workers.logs import ContextFields, JsonFormatter
from acci.workers.settings import Settings
from acci.workers.temporal_client import execute_command
from acci.workers.tracing import configure_tracing, reset_tracing
from acci.workers.worker import running_worker
from tests.workflows.conftest import RABBITMQ_URL, Captured, eventually, unique, worker_env
from tests.workflows.helpers import command
from tests.workflows.test_operator_doors import ACCI, run


@dataclass
class Traced:
    """A worker and a client tracing to ``spans``."""

    client: Client
    spans: InMemorySpanExporter

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span


@pytest_asyncio.fixture
async def traced(settings: Settings, temporal_env: WorkflowEnvironment) -> AsyncIterator[Traced]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    interceptors = configure_tracing(settings, provider=provider)
    try:
        config = temporal_env.client.config()
        config["interceptors"] = interceptors
        client = Client(**config)
        async with running_worker(settings, client):
            yield Traced(client, spans)
    finally:
        reset_tracing()


@contextmanager
def logged(name: str) -> Iterator[list[dict[str, Any]]]:
    """The JSON lines logger ``name`` writes in the block, formatted as the worker's are."""
    lines: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(self.format(record)))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFields())
    logger = logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _id(span: ReadableSpan) -> int:
    context = span.context
    assert context is not None
    return context.span_id


def _children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if _parent(s) == _id(parent)]


def _statement(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("db.statement") or attributes.get("db.query.text") or "")


async def test_a_command_is_one_trace_from_the_client_to_the_subscriber(
    traced: Traced, settings: Settings, captured: Captured
) -> None:
    tenant = unique("traced")
    subscriber = EventSubscriber(
        RABBITMQ_URL,
        database_url=settings.database_url.get_secret_value(),
        subscriber=f"traced-{uuid.uuid4().hex[:8]}",
    )
    seen: list[SpanContext] = []

    def handle(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        seen.append(trace.get_current_span().get_span_context())

    try:
        subscriber.subscribe(["TenantCreated"], tenant_id=tenant)
        sent = command(tenant, "CreateTenant", name="Traced Corp")
        with logged("acci.activities.command_activities") as lines:
            result = await execute_command(traced.client, sent, task_queue=settings.task_queue)

        def consume() -> tuple[int, SpanContext]:
            handled = subscriber.consume(handle, max_messages=1, idle_timeout=30)
            return handled, trace.get_current_span().get_span_context()

        handled, after = await asyncio.to_thread(consume)
        assert handled == 1
        # The message's span stays with its handling: not current in the thread afterwards.
        assert not after.is_valid
    finally:
        subscriber.delete(dead_letters=True)
        subscriber.close()
    (event_id,) = result.event_ids

    receive = await eventually(
        lambda: traced.named("acci.events receive"), what="the subscriber's receive span"
    )
    spans = traced.spans.get_finished_spans()
    start = traced.one("StartWorkflow:CommandWorkflow")
    run_workflow = traced.one("RunWorkflow:CommandWorkflow")
    start_activity = traced.one("StartActivity:RunCommand")
    run_activity = traced.one("RunActivity:RunCommand")
    (publish,) = [
        s
        for s in traced.named("acci.events send")
        if (s.attributes or {}).get("messaging.message.id") == str(event_id)
    ]
    (received,) = receive

    # The client's span is the root, the workflow's and its local activity's spans hang off it.
    assert start.parent is None and start.kind is SpanKind.CLIENT
    assert _parent(run_workflow) == _id(start)
    assert _parent(start_activity) == _id(start)
    assert _parent(run_activity) == _id(start_activity)
    # The append's statements and the publish run inside the activity's span.
    appends = [s for s in _children(spans, run_activity) if "event_store.events" in _statement(s)]
    assert any("INSERT INTO event_store.events" in _statement(s) for s in appends), [
        s.name for s in _children(spans, run_activity)
    ]
    assert all((s.attributes or {}).get("db.system") == "postgresql" for s in appends)
    assert _parent(publish) == _id(run_activity) and publish.kind is SpanKind.PRODUCER
    # The message carries the publish's context (W3C traceparent) ...
    await captured.wait_for({str(event_id)})
    headers = {str(p.message_id): p.headers or {} for _, p, _ in captured.messages}
    version, trace_id, parent_id, _flags = str(headers[str(event_id)]["traceparent"]).split("-")
    assert publish.context is not None
    assert (version, trace_id, parent_id) == (
        "00",
        f"{publish.context.trace_id:032x}",
        f"{_id(publish):016x}",
    )
    # ... which the subscriber continues: its handler runs in the receive span.
    assert _parent(received) == _id(publish) and received.kind is SpanKind.CONSUMER
    assert [c.span_id for c in seen] == [_id(received)]
    inbox = [s for s in _children(spans, received) if "subscriptions.inbox" in _statement(s)]
    assert inbox, [s.name for s in _children(spans, received)]
    # One trace for all of it.
    tree = [start, run_workflow, start_activity, run_activity, *appends, publish, received, *inbox]
    assert {s.context.trace_id for s in tree if s.context} == {start.context.trace_id}
    # The activity's span says which command it ran.
    attributes = run_activity.attributes or {}
    assert attributes.get("acci.tenant_id") == tenant
    assert attributes.get("acci.command_type") == "CreateTenant"
    assert attributes.get("acci.command_id") == str(sent.command_id)
    assert attributes.get("acci.aggregate_id") == tenant
    assert attributes.get("acci.events") == 1
    # The activity's log lines lead to the trace: its trace id and the activity's span id.
    (handled_line,) = [line for line in lines if line["msg"] == "command handled"]
    assert handled_line["trace_id"] == f"{start.context.trace_id:032x}"
    assert handled_line["span_id"] == f"{_id(run_activity):016x}"
    assert handled_line["command_id"] == str(sent.command_id)


async def test_projection_batches_are_traces_of_their_own_with_their_statements(
    traced: Traced, settings: Settings
) -> None:
    await execute_command(
        traced.client,
        command(unique("traced-batch"), "CreateTenant", name="Batch Corp"),
        task_queue=settings.task_queue,
    )

    def applied() -> list[ReadableSpan]:
        spans = traced.spans.get_finished_spans()
        return [
            s
            for s in traced.named("RunActivity:RunProjectionBatch")
            if any("INSERT" in _statement(c) for c in _children(spans, s))
        ]

    batches = await eventually(applied, what="a projection batch that wrote its read model")
    for batch in batches:
        # Not part of the trace of the client that started the projection workflows.
        assert batch.parent is None
        assert (batch.attributes or {}).get("acci.projection")


async def test_with_tracing_off_nothing_is_installed(
    settings: Settings, temporal_env: WorkflowEnvironment
) -> None:
    off = settings.model_copy(update={"tracing": "off"})
    assert configure_tracing(off) == []
    async with running_worker(off, temporal_env.client) as worker:
        interceptors = worker.config()["interceptors"]
        assert not [i for i in interceptors if isinstance(i, TracingInterceptor)], interceptors
    assert not hasattr(psycopg.AsyncConnection.connect, "__wrapped__")
    # No provider was set: the global one is still the API's proxy to nothing.
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"


class _Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: keeps each request's spans as (name, trace id, service name)."""

    received: list[tuple[str, str, str]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.received.append((span.name, span.trace_id.hex(), service))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    received: list[tuple[str, str, str]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    thread.join(10)


async def test_the_cli_exports_its_spans_over_otlp_and_the_worker_continues_its_trace(
    traced: Traced, settings: Settings, collector: tuple[str, list[tuple[str, str, str]]]
) -> None:
    endpoint, received = collector
    tenant = unique("traced-cli")
    env = {
        **worker_env(settings),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "acci-cli-test",
    }
    env.pop("ACCI_TRACING", None)
    data = json.dumps({"name": "CLI Corp"})
    code, _out, err = await run(
        [ACCI, "command", "CreateTenant", "--tenant", tenant, "--data", data, "--json"], env
    )
    assert code == 0, err
    # Exported before the process exited (the provider flushes at exit).
    (sent,) = [(n, t, s) for n, t, s in received if n == "StartWorkflow:CommandWorkflow"]
    assert sent[2] == "acci-cli-test"
    runs = await eventually(
        lambda: [
            s
            for s in traced.named("RunActivity:RunCommand")
            if (s.attributes or {}).get("acci.tenant_id") == tenant
        ],
        what="the worker's span of the CLI's command",
    )
    assert [f"{s.context.trace_id:032x}" for s in runs if s.context] == [sent[1]]


async def test_a_waiting_projection_batch_leaves_its_polls_of_the_store_out_of_its_trace(
    traced: Traced,
) -> None:
    handles = [
        traced.client.get_workflow_handle(projection_workflow_id(name))
        for name in ("tenants", "users", "tenant_activity")
    ]

    async def waiting(for_seconds: float) -> list[Waiting] | None:
        """Each projection's batch, if every one has waited (heartbeating) that long."""
        batches = [await _waiting_batch(h) for h in handles]
        if any(b is None or b.waited < for_seconds for b in batches):
            return None
        return [b for b in batches if b is not None]

    # Settled: every batch has waited long enough to be past any report it had to make (a
    # batch that applied something returns within a second).
    first = await eventually(lambda: waiting(3), what="every projection's batch to be waiting")
    before = [s for s in traced.spans.get_finished_spans() if _statement(s)]
    # Six more seconds of waiting: six polls of the store by each batch (ACCI_PROJECTION_POLL_MS).
    last = await eventually(
        lambda: waiting(max(b.waited for b in first) + 6),
        within=60,
        what="six more seconds of waiting",
    )
    after = [s for s in traced.spans.get_finished_spans() if _statement(s)]
    # The same batches all along: nothing but polls ran in the window.
    assert [b.activity_id for b in last] == [b.activity_id for b in first]
    assert [_statement(s) for s in after[len(before) :]] == []


@dataclass(frozen=True)
class Waiting:
    activity_id: str
    waited: float  # seconds since the batch activity started, as of its last heartbeat


async def _waiting_batch(handle: Any) -> Waiting | None:
    pending = (await handle.describe()).raw_description.pending_activities
    if len(pending) != 1 or not pending[0].HasField("last_heartbeat_time"):
        return None
    batch = pending[0]
    started = batch.last_started_time.ToDatetime()
    waited = (batch.last_heartbeat_time.ToDatetime() - started).total_seconds()
    return Waiting(batch.activity_id, waited)
